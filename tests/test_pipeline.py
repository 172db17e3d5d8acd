"""The device input pipeline: PIL-equal resampling, seeded crops, the automatic choice, and agreement with the
PIL path (same labels and order; eval images within rounding of timm's transforms on real data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import timm
import torch

from timm_transfusion.data import (
    PipelineError,
    build_pipeline,
    choose_pipeline,
    data_config_for,
    load_dataset_spec,
)
from timm_transfusion.data import pipeline as pipeline_module
from timm_transfusion.data.crops import CropPolicy, uniforms
from timm_transfusion.data.resample import FILTERS, resized_crops

ROOT = Path(__file__).resolve().parents[1]
PIL_FILTERS = {
    "nearest": PIL.Image.Resampling.NEAREST,
    "box": PIL.Image.Resampling.BOX,
    "bilinear": PIL.Image.Resampling.BILINEAR,
    "hamming": PIL.Image.Resampling.HAMMING,
    "bicubic": PIL.Image.Resampling.BICUBIC,
    "lanczos": PIL.Image.Resampling.LANCZOS,
}
# Documented tolerance (README, "Input pipelines"): device-path images differ from PIL's uint8 output by
# PIL's rounding, at most 1.5 grey levels anywhere and 0.5 on average.
MAX_LEVELS, MEAN_LEVELS = 1.5, 0.5


def levels(device_input: torch.Tensor, pil_input: torch.Tensor, data_config: dict) -> torch.Tensor:
    """|difference| of two normalised inputs, in grey levels (0..255)."""
    std = torch.tensor(data_config["std"]).view(1, -1, 1, 1) * 255
    return ((device_input - pil_input) * std).abs()


def one(name: str, images: torch.Tensor, box, size, flip=False) -> torch.Tensor:
    """uint8 images resized as grey levels, clipped to 0..255 as PIL clips."""
    return resized_crops(
        images.float(),
        torch.tensor([box], dtype=torch.float32),
        size,
        flip=torch.tensor([flip]),
        filters=(name,),
        codes=torch.tensor([FILTERS.index(name)]),
        bounds=(torch.tensor(0.0), torch.tensor(255.0)),
    )[0]


@pytest.mark.parametrize("name", FILTERS)
def test_resized_crop_matches_pil_resize_with_a_box(retinamnist, name):
    ds = load_dataset_spec(f"npz:{retinamnist}", "test")
    rng = np.random.default_rng(0)
    worst = 0.0
    for index in rng.choice(len(ds), 6, replace=False):
        image = ds[int(index)]["image"]
        x0, y0 = rng.uniform(0, 6, 2)
        w, h = rng.uniform(18, 28 - max(x0, y0), 2)
        size = tuple(int(s) for s in rng.choice([13, 40, 64], 2))
        box = (x0, y0, x0 + w, y0 + h)
        expected = np.asarray(image.resize(size, PIL_FILTERS[name], box=box), dtype=np.float32)
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
        got = one(name, pixels, (x0, y0, w, h), (size[1], size[0])).permute(1, 2, 0).numpy()
        worst = max(worst, float(np.abs(got - expected).max()))
    assert worst <= (0 if name == "nearest" else MAX_LEVELS)


@pytest.mark.parametrize("name", ["box"])
@pytest.mark.parametrize("size", [42, 84, 20])
def test_ties_fall_on_pils_side(retinamnist, name, size):
    """Scales like 2/3 put pixel edges exactly on the box filter's edge: the tie goes to PIL's pixel (within
    PIL's rounding to uint8 after each pass). Nearest is left out: PIL accumulates its sample positions
    step by step, and at exact ties that rounding, not a rule, picks the pixel."""
    image = load_dataset_spec(f"npz:{retinamnist}", "test")[7]["image"]
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    for flip in (False, True):
        expected = image.resize((size, size), PIL_FILTERS[name])
        expected = np.asarray(expected.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT) if flip else expected)
        got = one(name, pixels, (0.0, 0.0, 28.0, 28.0), (size, size), flip=flip).permute(1, 2, 0).numpy()
        assert np.abs(got - expected).max() <= 1.0


@pytest.mark.parametrize("name", ["bilinear", "bicubic"])
def test_a_confined_crop_is_cut_out_before_it_is_resized(retinamnist, name):
    """timm's random-resized crop: PIL ``crop(box).resize(size)``; the filter stops at the crop's edges."""
    image = load_dataset_spec(f"npz:{retinamnist}", "test")[11]["image"]
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
    box = (3, 2, 23, 24)
    expected = np.asarray(image.crop(box).resize((64, 64), PIL_FILTERS[name]), dtype=np.float32)
    bounds = (torch.tensor(0.0), torch.tensor(255.0))
    code = torch.tensor([FILTERS.index(name)])
    kwargs = dict(flip=torch.tensor([False]), filters=(name,), codes=code, bounds=bounds)
    box_tensor = torch.tensor([[3.0, 2.0, 20.0, 22.0]])
    confined = resized_crops(pixels, box_tensor, (64, 64), confine=True, **kwargs)[0].permute(1, 2, 0).numpy()
    reaching = resized_crops(pixels, box_tensor, (64, 64), **kwargs)[0].permute(1, 2, 0).numpy()
    assert np.abs(confined - expected).max() <= MAX_LEVELS
    assert np.abs(reaching - expected).max() > MAX_LEVELS  # without confining, the edges differ


def test_squash_crop_mode_matches_timms_eval_on_non_square_images(tmp_path):
    data_config = {
        "input_size": (3, 32, 32),
        "interpolation": "bilinear",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "crop_pct": 1.0,
    }
    rng = np.random.default_rng(0)
    images = [PIL.Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)) for _ in range(4)]
    features = datasets.Features(
        {"image": datasets.Image(mode="RGB"), "label": datasets.ClassLabel(num_classes=2)}
    )
    ds = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 0, 1]}, features=features)
    for mode in ("center", "squash"):
        config = {**data_config, "crop_mode": mode}
        device, pil = (build_pipeline(ds, config, pipeline=p, training=False) for p in ("device", "pil"))
        from_device = device.to_model(device.dataset.__getitems__([0, 1, 2, 3]))
        from_pil = pil.to_model(torch.utils.data.default_collate([pil.dataset[i] for i in range(4)]))
        assert levels(from_device, from_pil, config).max() <= MAX_LEVELS, mode
    config = {**data_config, "crop_mode": "border"}
    with pytest.raises(PipelineError, match="crop_mode 'border' on 30x20 images"):
        build_pipeline(ds, config, pipeline="device", training=False).dataset.__getitems__([0])


def test_flip_mirrors_the_resized_crop(retinamnist):
    image = load_dataset_spec(f"npz:{retinamnist}", "test")[3]["image"]
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    box = (2.5, 1.0, 20.0, 24.0)
    plain = one("bilinear", pixels, box, (32, 32))
    flipped = one("bilinear", pixels, box, (32, 32), flip=True)
    assert torch.allclose(flipped, plain.flip(-1), atol=1e-4)
    assert not torch.allclose(flipped, plain, atol=1.0)


@pytest.mark.parametrize("model_name", ["cbr_small", "resnet18"])  # bilinear and bicubic data configs
@pytest.mark.parametrize("img_size", [64, 224])
@pytest.mark.parametrize("fixture", ["retinamnist", "pneumoniamnist"])
def test_eval_inputs_of_both_pipelines_agree_on_real_images(request, fixture, model_name, img_size):
    ds = load_dataset_spec(f"npz:{request.getfixturevalue(fixture)}", "test")
    data_config = data_config_for(timm.create_model(model_name, num_classes=2), img_size)
    device, pil = (build_pipeline(ds, data_config, pipeline=p, training=False) for p in ("device", "pil"))
    indices = np.linspace(0, len(ds) - 1, 48).astype(int).tolist()
    from_device = device.to_model(device.dataset.__getitems__(indices))
    from_pil = pil.to_model(torch.utils.data.default_collate([pil.dataset[i] for i in indices]))
    difference = levels(from_device, from_pil, data_config)
    assert from_device.shape == from_pil.shape == (48, 3, img_size, img_size)
    assert difference.max() <= MAX_LEVELS and difference.mean() <= MEAN_LEVELS


def test_uniforms_depend_only_on_seed_epoch_index_and_column():
    draws = uniforms(3, 1, np.arange(20_000), 4)
    assert draws.shape == (20_000, 4) and draws.min() >= 0 and draws.max() < 1
    assert abs(draws.mean() - 0.5) < 0.01 and abs(draws.var() - 1 / 12) < 0.005
    assert np.array_equal(uniforms(3, 1, np.array([17, 5]), 4), draws[[17, 5]])
    for other in (uniforms(4, 1, np.arange(100), 4), uniforms(3, 2, np.arange(100), 4)):
        assert not np.isclose(other, draws[:100]).any(axis=1).all()
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 0.03


def test_random_crops_stay_in_the_image_within_scale_and_ratio():
    policy = CropPolicy("random", random_crop=True)
    boxes, flips, codes = policy.draw(0, 0, np.arange(5000), 28, 28)
    x0, y0, w, h = boxes.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 28 + 1e-4).all() and (y0 + h <= 28 + 1e-4).all()
    area = w * h / 28**2
    assert area.min() >= 0.8 - 1e-6 and area.max() <= 1 + 1e-6
    assert (w / h).min() >= 0.9 - 1e-6 and (w / h).max() <= 1.1 + 1e-6
    assert 0.47 < flips.mean() < 0.53
    assert set(codes.tolist()) == {FILTERS.index("bilinear"), FILTERS.index("bicubic")}
    eval_boxes, eval_flips, _ = CropPolicy("bicubic").draw(0, 0, np.arange(3), 20, 30)
    assert eval_boxes.tolist() == [[5.0, 0.0, 20.0, 20.0]] * 3 and not eval_flips.any()


def test_device_augmentation_is_per_image_whatever_the_batch_size(retinamnist):
    ds = load_dataset_spec(f"npz:{retinamnist}", "val")
    data_config = data_config_for(timm.create_model("resnet18", num_classes=5), 40)
    pipeline = build_pipeline(ds, data_config, pipeline="device", training=True, seed=7)

    def by_index(batch_size: int, epoch: int) -> dict[int, torch.Tensor]:
        pipeline.dataset.set_epoch(epoch)
        torch.manual_seed(batch_size)  # a different shuffle for each batch size
        loader = pipeline.loader(batch_size=batch_size, shuffle=True, drop_last=False, workers=0)
        inputs = {}
        for batch in loader:
            for index, image in zip(batch["index"].tolist(), pipeline.to_model(batch), strict=True):
                inputs[index] = image
        return inputs

    eights, fives = by_index(8, 0), by_index(5, 0)
    assert eights.keys() == fives.keys() == set(range(len(ds)))
    assert all(torch.equal(eights[i], fives[i]) for i in eights)
    next_epoch = by_index(8, 1)
    assert sum(not torch.equal(eights[i], next_epoch[i]) for i in eights) > 0.9 * len(ds)


def test_both_pipelines_yield_the_same_labels_in_the_same_order(retinamnist):
    ds = load_dataset_spec(f"npz:{retinamnist}", "train")
    data_config = data_config_for(timm.create_model("cbr_small", num_classes=5), 28)
    order = {}
    for name in ("device", "pil"):
        pipeline = build_pipeline(ds, data_config, pipeline=name, training=True, seed=1)
        torch.manual_seed(11)
        loader = pipeline.loader(batch_size=64, shuffle=True, drop_last=True, workers=0)
        batches = [batch for _, batch in zip(range(4), loader, strict=False)]
        order[name] = [(b["index"].tolist(), b["label"].tolist()) for b in batches]
        assert all(b["pixel_values"].dtype == torch.uint8 for b in batches)
    assert order["device"] == order["pil"]
    labels = ds["label"]
    assert all([labels[i] for i in index] == label for index, label in order["device"])


def test_channels_last_inputs(retinamnist):
    ds = load_dataset_spec(f"npz:{retinamnist}", "val")
    data_config = data_config_for(timm.create_model("cbr_small", num_classes=5), 32)
    for name in ("device", "pil"):
        pipeline = build_pipeline(ds, data_config, pipeline=name, training=False, channels_last=True)
        batch = next(iter(pipeline.loader(batch_size=4, shuffle=False, drop_last=False, workers=0)))
        images = pipeline.to_model(batch)
        assert images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()


def mixed_sizes(tmp_path: Path) -> datasets.Dataset:
    images = [
        PIL.Image.new("RGB", size, (i * 40, 0, 0)) for i, size in enumerate([(28, 28), (32, 24), (28, 28)])
    ]
    features = datasets.Features(
        {"image": datasets.Image(mode="RGB"), "label": datasets.ClassLabel(num_classes=2)}
    )
    return datasets.Dataset.from_dict({"image": images, "label": [0, 1, 0]}, features=features)


def test_the_cli_offers_exactly_the_pipelines_the_data_layer_knows():
    from timm_transfusion.data import PIPELINES
    from timm_transfusion.train.validation import PIPELINE_CHOICES

    assert PIPELINE_CHOICES == PIPELINES


def test_auto_takes_the_device_path_for_one_size_and_pil_otherwise(retinamnist, tmp_path, monkeypatch):
    splits = {s: load_dataset_spec(f"npz:{retinamnist}", s) for s in ("train", "test")}
    choice = choose_pipeline("auto", splits)
    assert choice.name == "device" and "1480 images of 28x28" in choice.reason
    assert choose_pipeline("pil", splits).name == "pil"
    mixed = {"train": mixed_sizes(tmp_path)}
    choice = choose_pipeline("auto", mixed)
    assert choice.name == "pil" and "2 sizes" in choice.reason
    with pytest.raises(PipelineError, match=r"--pipeline device needs images of one size.*32x24"):
        choose_pipeline("device", mixed)
    with pytest.raises(PipelineError, match="choose from"):
        choose_pipeline("gpu", splits)
    monkeypatch.setattr(pipeline_module, "DEVICE_PATH_MAX_BYTES", 1000)
    scanned = []
    monkeypatch.setattr(
        pipeline_module, "image_sizes", lambda ds: scanned.append(ds) or Counter({(28, 28): len(ds)})
    )
    choice = choose_pipeline("auto", splits)
    assert choice.name == "pil" and "above the device-path limit" in choice.reason
    assert not scanned  # too large at the first image's size: no header scan
    assert choose_pipeline("device", splits).name == "device"  # asked for: the limit does not apply


def test_train_records_the_pipeline_and_refuses_device_on_mixed_sizes_before_writing(tmp_path):
    from timm_transfusion.train import TrainConfig, train

    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": mixed_sizes(tmp_path), "val": mixed_sizes(tmp_path)}).save_to_disk(folder)
    config = TrainConfig(
        "test_resnet",
        f"hf:{folder}",
        str(tmp_path / "run"),
        batch_size=2,
        img_size=32,
        max_steps=1,
        pipeline="device",
        progress=False,
        log_with="none",
    )
    with pytest.raises(PipelineError, match="one size"):
        train(config)
    assert not (tmp_path / "run").exists()
    config.pipeline = "auto"
    summary = train(config)
    assert summary["pipeline"] == "pil" and summary["steps"] == 1
    rate = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["train_images_per_s"]
    assert rate > 0


TWO_PROCESS_SCRIPT = """
import sys, numpy as np, torch
from accelerate import Accelerator, DataLoaderConfiguration
import timm
from timm_transfusion.data import build_pipeline, data_config_for, load_dataset_spec
accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=3))
ds = load_dataset_spec("synthetic:fundus:train=40,val=8", "train")
pipeline = build_pipeline(ds, data_config_for(timm.create_model("resnet18", num_classes=2), 36),
                          pipeline="device", training=True, seed=5)
loader = accelerator.prepare(pipeline.loader(batch_size=6, shuffle=True, drop_last=False, workers=0))
pipeline.dataset.set_epoch(2)
loader.set_epoch(2)
indices, inputs = [], []
for batch in loader:
    indices.append(batch["index"]); inputs.append(pipeline.to_model(batch))
np.savez(f"{sys.argv[1]}/rank{accelerator.process_index}.npz", index=torch.cat(indices).numpy(),
         inputs=torch.cat(inputs).numpy(), world=accelerator.num_processes)
"""


@pytest.mark.slow
def test_device_augmentation_does_not_depend_on_the_process_count(tmp_path):
    """Two gloo processes each crop their shard; every image matches the single-process crop of it."""
    from test_train_launch import free_port

    script = tmp_path / "shard.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", str(free_port()), str(script), str(tmp_path)]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    shards = [np.load(tmp_path / f"rank{rank}.npz") for rank in (0, 1)]
    assert all(int(shard["world"]) == 2 for shard in shards)
    ds = load_dataset_spec("synthetic:fundus:train=40,val=8", "train")
    pipeline = build_pipeline(
        ds,
        data_config_for(timm.create_model("resnet18", num_classes=2), 36),
        pipeline="device",
        training=True,
        seed=5,
    )
    pipeline.dataset.set_epoch(2)
    seen = set()
    for shard in shards:
        for index, image in zip(shard["index"].tolist(), shard["inputs"], strict=True):
            alone = pipeline.to_model(pipeline.dataset.__getitems__([index]))[0].numpy()
            assert np.array_equal(image, alone), index
            seen.add(index)
    assert seen == set(range(40))
