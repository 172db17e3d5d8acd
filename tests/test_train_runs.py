"""One short real run per dataset spec kind, each leaving a complete run folder that stock timm loads."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score
from test_data import write_imagefolder

from timm_transfusion.data import load_dataset_spec
from timm_transfusion.train import TrainConfig, read_jsonl, train

MODEL = "test_resnet"  # a tiny timm model: these tests are about the loop, not the architecture


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def short_run(output, dataset: str, **options) -> dict:
    settings = dict(model=MODEL, batch_size=16, max_steps=4, eval_every=2, progress=False, log_with="none")
    settings.update(options)
    return train(TrainConfig(dataset=dataset, output=str(output), **settings))


def assert_complete_run_folder(folder, num_classes: int) -> None:
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "summary.json", "train_args.json"):
        assert (folder / name).is_file(), name
    records = read_jsonl(folder / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4]
    for record in records:
        assert {"step", "epoch", "loss", "auc", "accuracy"} <= set(record)
        assert 0.0 <= record["auc"] <= 1.0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["final"]["auc"] == records[-1]["auc"] and summary["num_classes"] == num_classes
    assert {"init", "init_source", "dataset", "seed", "steps_to_threshold", "wall_time_s"} <= set(summary)
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    saved = load_file(folder / "model.safetensors")
    assert model.num_classes == num_classes
    assert all(torch.equal(tensor, model.state_dict()[key]) for key, tensor in saved.items())


def test_run_on_npz_retinamnist(tmp_path, retinamnist):
    summary = short_run(tmp_path / "run", f"npz:{retinamnist}", save_predictions=True, log_with="tensorboard")
    assert_complete_run_folder(tmp_path / "run", 5)
    assert summary["eval_samples"] == 120 and summary["split"] == "val"
    assert any((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    # The AUC the run reports is scikit-learn's OvR macro AUC of the predictions it made.
    saved = np.load(tmp_path / "run" / "eval_predictions.npz")
    expected = roc_auc_score(saved["labels"], saved["scores"].astype(np.float64), multi_class="ovr")
    assert summary["final"]["auc"] == pytest.approx(expected, abs=1e-9)
    assert sorted(saved["index"].tolist()) == list(range(120))


def test_run_on_npz_pneumoniamnist_binary_with_upsampling(tmp_path, pneumoniamnist):
    summary = short_run(tmp_path / "run", f"npz:{pneumoniamnist}", img_size=40, save_predictions=True)
    assert_complete_run_folder(tmp_path / "run", 2)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert summary["img_size"] == 40 and config["pretrained_cfg"]["input_size"] == [3, 40, 40]
    saved = np.load(tmp_path / "run" / "eval_predictions.npz")
    assert summary["final"]["auc"] == pytest.approx(
        roc_auc_score(saved["labels"], saved["scores"][:, 1]), abs=1e-9
    )


def test_run_on_imagefolder(tmp_path, retinamnist):
    write_imagefolder(tmp_path / "images", retinamnist, {"train": 64, "val": 24})
    short_run(tmp_path / "run", f"imagefolder:{tmp_path / 'images'}")
    assert_complete_run_folder(
        tmp_path / "run", len({p.name for p in (tmp_path / "images" / "train").iterdir()})
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["label_names"][0].startswith("grade_")


def test_run_on_synthetic_with_grad_accumulation(tmp_path):
    summary = short_run(tmp_path / "run", "synthetic:fundus:train=96,val=48", grad_accum=2)
    assert_complete_run_folder(tmp_path / "run", 5)
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]["epoch"] == pytest.approx(8 / 6)
    assert summary["label_names"][0] == "no DR"


def test_run_on_saved_dataset_via_hf(tmp_path, pneumoniamnist):
    # shuffled: the file's first 96 training images are all pneumonia, a one-class set training refuses
    train_split = load_dataset_spec(f"npz:{pneumoniamnist}", "train").shuffle(seed=0).select(range(96))
    val_split = load_dataset_spec(f"npz:{pneumoniamnist}", "val").select(range(40))
    datasets.DatasetDict({"train": train_split, "validation": val_split}).save_to_disk(tmp_path / "saved")
    summary = short_run(tmp_path / "run", f"hf:{tmp_path / 'saved'}")
    assert_complete_run_folder(tmp_path / "run", 2)
    assert summary["eval_samples"] == 40


def test_multilabel_end_to_end(tmp_path):
    summary = short_run(
        tmp_path / "run", "synthetic:fundus-multilabel:train=96,val=60", save_predictions=True
    )
    assert_complete_run_folder(tmp_path / "run", 3)
    assert summary["multilabel"]
    per_label = summary["final"]["auc_per_label"]
    saved = np.load(tmp_path / "run" / "eval_predictions.npz")
    assert saved["labels"].shape == (60, 3)
    assert per_label == pytest.approx(roc_auc_score(saved["labels"], saved["scores"], average=None).tolist())
    assert summary["final"]["auc"] == pytest.approx(np.mean(per_label))


def test_project_model_with_transfusion_init_trains(tmp_path, mobilenet_weights):
    summary = short_run(
        tmp_path / "run",
        "synthetic:fundus:train=64,val=32",
        model="mobilenetv1_025",
        init="transfusion-1",
        init_source=str(mobilenet_weights),
        max_steps=2,
        eval_every=2,
    )
    assert summary["init"] == "transfusion-1" and summary["steps"] == 2
    reloaded = timm.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True)
    assert reloaded.num_classes == 5
