"""Bad inputs each give a clear error before any training starts (nothing written to the output folder)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from timm_transfusion.data import DatasetSpecError, LabelError
from timm_transfusion.train import ImageSizeError, OutputFolderError, TrainConfig, TrainConfigError, train

MODEL = "test_resnet"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(output, dataset: str, **options) -> TrainConfig:
    settings = dict(model=MODEL, batch_size=16, max_steps=2, eval_every=2, progress=False, log_with="none")
    settings.update(options)
    return TrainConfig(dataset=dataset, output=str(output), **settings)


def assert_refused(output, error: type[Exception], match: str, dataset: str, **options) -> None:
    with pytest.raises(error, match=match):
        train(config(output, dataset, **options))
    assert not output.exists(), "the run wrote to its output folder before refusing"


def test_unknown_dataset_spec(tmp_path):
    assert_refused(
        tmp_path / "run", DatasetSpecError, "unknown dataset spec 'kaggle:retina'", "kaggle:retina"
    )


def test_missing_file(tmp_path):
    assert_refused(tmp_path / "run", DatasetSpecError, "does not exist", f"npz:{tmp_path / 'absent.npz'}")


def test_absent_split(tmp_path, cifar10_subset):
    assert_refused(tmp_path / "run", DatasetSpecError, "no 'val_images'", f"npz:{cifar10_subset}")


def test_absent_label_column(tmp_path, retinamnist):
    assert_refused(
        tmp_path / "run",
        DatasetSpecError,
        r"no label column \['grade'\]",
        f"npz:{retinamnist}",
        label_column="grade",
    )


def test_labels_outside_num_classes(tmp_path, retinamnist):
    assert_refused(
        tmp_path / "run",
        LabelError,
        r"labels \[3, 4\] are outside num_classes=3",
        f"npz:{retinamnist}",
        num_classes=3,
    )


def test_empty_eval_split(tmp_path):
    assert_refused(tmp_path / "run", LabelError, r"\[val\] is empty", "synthetic:fundus:train=32,val=0")


def test_empty_train_split(tmp_path):
    images = np.zeros((0, 28, 28), dtype=np.uint8)
    path = tmp_path / "empty.npz"
    np.savez(
        path,
        train_images=images,
        train_labels=np.zeros((0, 1)),
        val_images=images[:0],
        val_labels=np.zeros((0, 1)),
    )
    assert_refused(tmp_path / "run", LabelError, r"\[train\] is empty", f"npz:{path}")


def test_image_size_the_model_cannot_take(tmp_path):
    assert_refused(
        tmp_path / "run",
        ImageSizeError,
        "cannot take 28x28 images",
        "synthetic:fundus:train=32,val=8,size=28",
        model="test_vit",
    )


def test_output_folder_holding_a_different_run_is_refused_unless_overwrite(tmp_path):
    dataset = "synthetic:fundus:train=32,val=16"
    train(config(tmp_path / "run", dataset))
    first = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(OutputFolderError, match=r"holds a different run \(lr: 0.001 -> 0.01\).*--overwrite"):
        train(config(tmp_path / "run", dataset, lr=0.01))
    with pytest.raises(OutputFolderError, match="already holds this run; pass --resume"):
        train(config(tmp_path / "run", dataset))
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == first
    summary = train(config(tmp_path / "run", dataset, lr=0.01, overwrite=True))
    assert json.loads((tmp_path / "run" / "train_args.json").read_text())["lr"] == 0.01
    assert summary["steps"] == 2


def test_non_run_folder_is_never_deleted(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("precious")
    with pytest.raises(OutputFolderError, match="holds no run"):
        train(config(tmp_path / "run", "synthetic:fundus:train=32,val=16", overwrite=True))
    assert (tmp_path / "run" / "notes.txt").read_text() == "precious"


def test_option_out_of_range(tmp_path):
    assert_refused(
        tmp_path / "run",
        TrainConfigError,
        "--eval-every must be >= 1, got 0",
        "synthetic:fundus",
        eval_every=0,
    )


def test_one_class_eval_split_gives_null_auc_in_strict_json(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "oneclass.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 255, (32, 28, 28), dtype=np.uint8),
        train_labels=np.arange(32).reshape(-1, 1) % 2,
        val_images=rng.integers(0, 255, (16, 28, 28), dtype=np.uint8),
        val_labels=np.zeros((16, 1)),
    )
    train(config(tmp_path / "run", f"npz:{path}"))

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))

    summary = strict((tmp_path / "run" / "summary.json").read_text())
    records = [strict(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["final"]["auc"] is None and records[-1]["auc"] is None
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("labels", "feature", "match"),
    [
        ([[0, 2], [1], [2], [0, 1]] * 4, "index-lists", "lists class indices per image"),
        (["mild", "severe"] * 8, "strings", "labels must be class indices or 0/1 targets"),
    ],
)
def test_hf_labels_in_unsupported_formats_are_refused_clearly(tmp_path, labels, feature, match):
    import datasets

    names = ["edema", "effusion", "nodule"]
    label_feature = (
        datasets.Sequence(datasets.ClassLabel(names=names))
        if feature == "index-lists"
        else datasets.Value("string")
    )
    features = datasets.Features({"image": datasets.Image(), "label": label_feature})
    images = [np.full((8, 8, 3), i, dtype=np.uint8) for i in range(len(labels))]
    split = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
    datasets.DatasetDict({"train": split, "val": split}).save_to_disk(tmp_path / "saved")
    assert_refused(tmp_path / "run", LabelError, match, f"hf:{tmp_path / 'saved'}")
