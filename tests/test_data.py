"""Dataset specs -> datasets.Dataset with image (PIL RGB) + label, timm transforms, and clear spec errors."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from timm_transfusion.data import (
    DatasetSpecError,
    LabelError,
    TransformedDataset,
    build_transform,
    check_labels,
    data_config_for,
    label_info,
    load_dataset_spec,
)
from timm_transfusion.data.synthetic import load_synthetic


def write_imagefolder(root, npz_path, per_split: dict[str, int]) -> None:
    """RetinaMNIST images written as root/split/grade_k/i.png (the layout the imagefolder builder reads)."""
    data = np.load(npz_path)
    for split, count in per_split.items():
        for i in range(count):
            label = int(data[f"{split}_labels"][i, 0])
            folder = root / split / f"grade_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data[f"{split}_images"][i]).save(folder / f"{i}.png")


def test_npz_retinamnist_gives_rgb_images_and_int_labels(retinamnist):
    ds = load_dataset_spec(f"npz:{retinamnist}", "test")
    assert ds.column_names == ["image", "label"] and len(ds) == 400
    assert ds[0]["image"].mode == "RGB" and ds[0]["image"].size == (28, 28)
    raw = np.load(retinamnist)
    assert np.array_equal(np.asarray(ds[3]["image"]), raw["test_images"][3])
    assert ds["label"][:20] == raw["test_labels"][:20, 0].tolist()
    assert label_info(ds).num_classes == 5 and not label_info(ds).multilabel


def test_npz_grayscale_becomes_three_equal_channels(pneumoniamnist):
    ds = load_dataset_spec(f"npz:{pneumoniamnist}", "val")
    pixels = np.asarray(ds[0]["image"])
    raw = np.load(pneumoniamnist)["val_images"][0]
    assert pixels.shape == (28, 28, 3)
    for channel in range(3):
        assert np.array_equal(pixels[..., channel], raw)
    assert label_info(ds).num_classes == 2


def test_npz_multilabel_labels_become_multi_hot_lists(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (12, 4)).astype(np.uint8)
    path = tmp_path / "chest.npz"
    np.savez(path, train_images=rng.integers(0, 255, (12, 16, 16), dtype=np.uint8), train_labels=labels)
    ds = load_dataset_spec(f"npz:{path}", "train")
    assert ds["label"] == labels.tolist()
    assert label_info(ds).multilabel and label_info(ds).num_classes == 4


def test_imagefolder_written_by_the_test(tmp_path, retinamnist):
    write_imagefolder(tmp_path, retinamnist, {"train": 20, "test": 8})
    ds = load_dataset_spec(f"imagefolder:{tmp_path}", "test")
    assert len(ds) == 8 and ds[0]["image"].mode == "RGB"
    names = ds.features["label"].names
    truth = np.load(retinamnist)["test_labels"][:8, 0]
    assert sorted(names[label] for label in ds["label"]) == sorted(f"grade_{t}" for t in truth)


def test_hf_spec_loads_a_saved_dataset_dict_with_split_aliases(tmp_path, pneumoniamnist):
    source = load_dataset_spec(f"npz:{pneumoniamnist}", "val").select(range(10))
    saved = datasets.DatasetDict({"train": source, "validation": source.select(range(4))})
    saved = saved.rename_column("image", "img").rename_column("label", "labels")
    saved.save_to_disk(tmp_path / "saved")
    ds = load_dataset_spec(f"hf:{tmp_path / 'saved'}", "val")
    assert ds.column_names == ["image", "label"] and len(ds) == 4
    assert ds["label"] == source["label"][:4]


def test_hf_several_label_columns_become_one_multilabel_target(tmp_path):
    images = [np.full((8, 8, 3), i, dtype=np.uint8) for i in range(6)]
    table = {"image": images, "Edema": [0, 1, 0, 1, 1, 0], "Effusion": [1, 1, 0, 0, 1, 0]}
    features = datasets.Features(
        {"image": datasets.Image(), "Edema": datasets.Value("int64"), "Effusion": datasets.Value("int64")}
    )
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(table, features=features)}).save_to_disk(
        tmp_path / "cx"
    )
    ds = load_dataset_spec(f"hf:{tmp_path / 'cx'}", "train", label_column="Edema,Effusion")
    assert ds["label"][:3] == [[0, 1], [1, 1], [0, 0]]
    assert label_info(ds).multilabel and label_info(ds).num_classes == 2


def test_synthetic_tasks_are_deterministic_and_labelled():
    first = load_dataset_spec("synthetic:fundus:train=40,seed=3", "train")
    load_synthetic.cache_clear()
    again = load_dataset_spec("synthetic:fundus:train=40,seed=3", "train")
    other_seed = load_dataset_spec("synthetic:fundus:train=40,seed=4", "train")
    assert np.array_equal(np.asarray(first[7]["image"]), np.asarray(again[7]["image"]))
    assert not np.array_equal(np.asarray(first[7]["image"]), np.asarray(other_seed[7]["image"]))
    assert set(first["label"]) <= set(range(5)) and len(set(first["label"])) > 1
    edges = load_dataset_spec("synthetic:edges:val=30,size=24", "val")
    assert edges[0]["image"].size == (24, 24) and label_info(edges).num_classes == 6
    multi = load_dataset_spec("synthetic:fundus-multilabel:test=30", "test")
    assert label_info(multi).multilabel and np.asarray(multi["label"]).shape == (30, 3)


def test_synthetic_lesion_count_sets_the_fundus_grade():
    """Higher grades carry more dark-red lesion pixels inside the disc (the signal the task is about)."""
    ds = load_dataset_spec("synthetic:fundus:train=300", "train")
    darkness = {g: [] for g in range(5)}
    for example in ds:
        rgb = np.asarray(example["image"]).astype(float)
        inside = rgb.sum(-1) > 60
        lesion = inside & (rgb[..., 0] < 0.55 * np.median(rgb[..., 0][inside]))
        darkness[example["label"]].append(lesion.sum())
    means = [np.mean(darkness[g]) for g in range(4)]
    assert means == sorted(means)


@pytest.mark.parametrize(
    ("spec", "split", "message"),
    [
        ("csv:data.csv", "train", "unknown dataset spec 'csv:data.csv'"),
        ("retinamnist", "train", "unknown dataset spec"),
        ("npz:/no/such/file.npz", "train", "'/no/such/file.npz' does not exist"),
        ("imagefolder:/no/such/dir", "train", "does not exist"),
        ("synthetic:mnist", "train", "unknown synthetic task 'mnist'"),
        ("synthetic:fundus:train=x", "train", "bad synthetic option"),
        ("synthetic:fundus", "validation_2", "no split 'validation_2'"),
    ],
)
def test_bad_specs_raise_clear_errors(spec, split, message):
    with pytest.raises(DatasetSpecError, match=message.replace("(", r"\(")):
        load_dataset_spec(spec, split)


def test_absent_npz_split_names_the_splits_that_exist(cifar10_subset):
    with pytest.raises(DatasetSpecError, match=r"no 'val_images', 'val_labels'.*\['test', 'train'\]"):
        load_dataset_spec(f"npz:{cifar10_subset}", "val")


def test_absent_label_column_is_named(tmp_path, pneumoniamnist):
    source = load_dataset_spec(f"npz:{pneumoniamnist}", "val").select(range(4))
    datasets.DatasetDict({"train": source}).save_to_disk(tmp_path / "saved")
    with pytest.raises(DatasetSpecError, match=r"no label column \['finding'\]"):
        load_dataset_spec(f"hf:{tmp_path / 'saved'}", "train", label_column="finding")


def test_label_checks_reject_out_of_range_and_empty(retinamnist):
    ds = load_dataset_spec(f"npz:{retinamnist}", "val")
    with pytest.raises(LabelError, match=r"labels \[3, 4\] are outside num_classes=3"):
        check_labels(ds, label_info(ds, num_classes=3), "retina val")
    with pytest.raises(LabelError, match="is empty"):
        check_labels(ds.select([]), label_info(ds), "retina val")


def test_timm_transform_upsamples_to_img_size_as_uint8(retinamnist):
    import timm

    ds = load_dataset_spec(f"npz:{retinamnist}", "val")
    config = data_config_for(timm.create_model("test_resnet"), 64)
    assert config["input_size"] == (3, 64, 64)
    pixels = build_transform(config, training=False)(ds[0]["image"])
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 64, 64)


def test_augmentation_depends_only_on_seed_epoch_and_index(retinamnist):
    import timm

    ds = load_dataset_spec(f"npz:{retinamnist}", "val")
    transform = build_transform(data_config_for(timm.create_model("test_resnet"), 28), training=True)
    wrapped = TransformedDataset(ds, transform, seed=1)
    first = wrapped[5]["pixel_values"]
    torch.rand(10)  # global RNG use in between must not matter
    assert torch.equal(wrapped[5]["pixel_values"], first)
    views = []
    for epoch in range(4):
        wrapped.set_epoch(epoch)
        views.append(wrapped[5]["pixel_values"])
    assert any(not torch.equal(views[0], v) for v in views[1:])


def test_npz_split_is_read_once_per_file_version(tmp_path):
    """A grid reads the same split for every run: kept in memory, but a rewritten file is read again."""
    import os

    from timm_transfusion.data.npz import _load_npz

    path = tmp_path / "tiny.npz"
    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    np.savez(path, train_images=images, train_labels=np.array([[0], [1], [0], [1]]))
    _load_npz.cache_clear()
    first = load_dataset_spec(f"npz:{path}", "train")
    load_dataset_spec(f"npz:{path}", "train")
    assert _load_npz.cache_info().hits == 1 and first["label"] == [0, 1, 0, 1]
    np.savez(path, train_images=images, train_labels=np.array([[1], [1], [0], [0]]))
    os.utime(path, ns=(1, 1))  # a different mtime whatever the clock's resolution
    assert load_dataset_spec(f"npz:{path}", "train")["label"] == [1, 1, 0, 0]
