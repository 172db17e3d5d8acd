"""`transfusion experiment` and `transfusion train`: the grid, its report files, and the console commands."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import timm
from PIL import Image

from timm_transfusion.cli import main
from timm_transfusion.similarity import SimilarityReport
from timm_transfusion.similarity.capture import default_layers
from timm_transfusion.train.experiment import results_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")


COMMON = ["--batch-size", "16", "--eval-every", "2", "--no-progress", "--log-with", "none"]


def test_experiment_grid_writes_the_report(tmp_path, mobilenet_weights, capsys):
    out = tmp_path / "exp"
    argv = [
        "experiment",
        "--model",
        "mobilenetv1_025",
        "--source",
        str(mobilenet_weights),
        "--dataset",
        "synthetic:fundus:train=64,val=40",
        "--inits",
        "random,pretrained,transfusion-1",
        "--seeds",
        "2",
        "--max-steps",
        "4",
        "--auc-thresholds",
        "0.5,0.99",
        *COMMON,
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    assert f"report: {out / 'results.md'}" in capsys.readouterr().out
    for init in ("random", "pretrained", "transfusion-1"):
        for seed in (0, 1):
            summary = json.loads((out / "runs" / f"{init}-seed{seed}" / "summary.json").read_text())
            assert summary["init"] == init and summary["seed"] == seed
            assert summary["init_source"] == (None if init == "random" else str(mobilenet_weights))
    rows = {row["init"]: row for row in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == {"random", "pretrained", "transfusion-1"} and rows["random"]["seeds"] == "2"
    finals = [
        json.loads((out / "runs" / f"pretrained-seed{s}" / "summary.json").read_text())["final"]["auc"]
        for s in (0, 1)
    ]
    assert float(rows["pretrained"]["auc_mean"]) == pytest.approx(sum(finals) / 2)
    markdown = (out / "results.md").read_text()
    assert "| pretrained |" in markdown and "steps to AUC 0.5" in markdown and "speed-up @0.99" in markdown
    for picture in ("convergence.png", "filters.png", "representations.png"):
        with Image.open(out / picture) as image:
            assert image.size[0] > 300 and image.size[1] > 200

    # How much each layer moved: every block group of the model, one column pair per init, PWCCA in [0, 1]
    # where defined (40 eval images: too few datapoints for the widest layers, reported as missing).
    model = timm.create_model("mobilenetv1_025", num_classes=2)
    changes = list(csv.DictReader((out / "representations.csv").open()))
    assert [row["layer"] for row in changes] == default_layers(model)
    for init in ("random", "pretrained", "transfusion-1"):
        values = [float(row[f"{init}_pwcca"]) for row in changes if row[f"{init}_pwcca"]]
        assert len(values) >= 3 and all(0.0 <= v <= 1.0 + 1e-9 for v in values)
        assert changes[-1][f"{init}_pwcca"] == ""  # pre_logits: 40 datapoints for 256 features
    reports = json.loads((out / "representations.json").read_text())
    assert SimilarityReport.from_dict(reports["pretrained"]).model_b == "pretrained fine-tuned"
    assert "## How much fine-tuning changed each layer" in markdown and "| stem |" in markdown

    # Re-running the same command reuses the finished runs instead of training again.
    before = (out / "runs" / "random-seed0" / "model.safetensors").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "runs" / "random-seed0" / "model.safetensors").stat().st_mtime_ns == before


def test_results_table_speedup_relative_to_random():
    def run(auc, steps):
        return {"final": {"auc": auc}, "steps_to_threshold": {"0.8": steps}}

    summaries = {
        "random": [run(0.80, 400), run(0.82, 600)],
        "pretrained": [run(0.84, 100), run(0.86, 150)],
        "meanvar": [run(0.83, 200), run(0.81, None)],
    }
    rows = {r["init"]: r for r in results_table(summaries, [0.8])}
    assert rows["random"]["auc_mean"] == pytest.approx(0.81) and rows["random"]["auc_std"] == pytest.approx(
        0.01
    )
    assert rows["pretrained"]["steps_to_0.8"] == 125 and rows["pretrained"]["speedup_0.8"] == pytest.approx(
        4.0
    )
    assert rows["meanvar"]["reached_0.8"] == 1 and rows["meanvar"]["speedup_0.8"] is None


def test_train_command_runs_and_reports_user_errors_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "test_resnet",
        "--dataset",
        "synthetic:fundus-multilabel:train=32,val=16",
        "--max-steps",
        "2",
        *COMMON,
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["multilabel"] is True
    assert main(argv) == 2
    assert "transfusion train: error: output folder" in capsys.readouterr().err
    assert main([*argv[:4], "synthetic:retina", *argv[5:-1], str(tmp_path / "other")]) == 2
    assert "unknown synthetic task 'retina'" in capsys.readouterr().err


def test_demo_quick_runs_offline_and_says_the_data_is_synthetic(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "demo", Path(__file__).resolve().parents[1] / "scripts" / "demo.py"
    )
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(["--quick", "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC data" in printed
    assert f"Report: {tmp_path / 'experiment' / 'results.md'}" in printed
    assert (tmp_path / "source" / "summary.json").is_file()
    rows = list(csv.DictReader((tmp_path / "experiment" / "results.csv").open()))
    assert [row["init"] for row in rows] == ["random", "pretrained", "meanvar", "transfusion-1"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--inits", "random,bogus"], "unknown init 'bogus'"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--inits", "random,meanvar", "--source", "missing/weights.safetensors"], "does not exist"),
    ],
)
def test_experiment_refuses_a_bad_grid_before_training(tmp_path, capsys, options, message):
    out = tmp_path / "exp"
    args = ["experiment", "--model", "test_resnet", "--dataset", "synthetic:fundus:train=32,val=16"]
    assert main([*args, "--max-steps", "2", "--output", str(out), *options]) != 0
    assert message in capsys.readouterr().err
    assert not (out / "runs").exists()
