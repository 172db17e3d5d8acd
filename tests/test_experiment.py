"""`transfusion experiment` and `transfusion train`: the grid, its report files, and the console commands."""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
import timm
from PIL import Image

from timm_transfusion.cli import main
from timm_transfusion.files import read_jsonl
from timm_transfusion.similarity import SimilarityReport
from timm_transfusion.similarity.capture import default_layers
from timm_transfusion.train import TrainConfig
from timm_transfusion.train.experiment import Cell, expand_grid, init_source_for, write_report

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
        "synthetic:fundus:train=64,val=40,test=48",
        "--inits",
        "random,pretrained,transfusion-1",
        "--seeds",
        "2",
        "--max-steps",
        "4",
        "--eval-log-start",
        "1",
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
            run = out / "runs" / f"{init}-seed{seed}"
            summary = json.loads((run / "summary.json").read_text())
            assert summary["init"] == init and summary["seed"] == seed and summary["split"] == "test"
            assert summary["init_source"] == (None if init == "random" else str(mobilenet_weights))
            assert summary["select"]["split"] == "val" and summary["select"]["num_samples"] == 40
            # Dense early: 1, 2, 4 (doubling) plus the regular grid (every 2) and the last step.
            steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl")]
            assert steps == [1, 2, 4]
            assert sorted(p.name for p in (run / "eval_predictions").iterdir()) == [
                f"step_{s:08d}.npz" for s in steps
            ]
    rows = {row["init"]: row for row in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == {"random", "pretrained", "transfusion-1"} and rows["random"]["seeds"] == "2"
    finals = [
        json.loads((out / "runs" / f"pretrained-seed{s}" / "summary.json").read_text())["final"]["auc"]
        for s in (0, 1)
    ]
    assert float(rows["pretrained"]["final_auc_mean"]) == pytest.approx(sum(finals) / 2)
    assert json.loads(rows["pretrained"]["final_auc_per_seed"]) == pytest.approx(finals)
    low, high = (
        float(rows["pretrained"]["final_auc_vs_random_low"]),
        float(rows["pretrained"]["final_auc_vs_random_high"]),
    )
    assert low < float(rows["pretrained"]["final_auc_vs_random"]) < high
    markdown = (out / "results.md").read_text()
    assert markdown.index("## Findings") < markdown.index("## Final AUC and convergence by init")
    assert "| pretrained |" in markdown and "steps to 0.5 (reached)" in markdown
    assert "Verdict rule:" in markdown
    findings = json.loads((out / "findings.json").read_text())
    assert findings["eval_split"] == "test" and findings["missing_runs"] == []
    claims = {f["claim"]: f for f in findings["findings"]}
    assert {f["verdict"] for f in claims.values()} <= {"supported", "contradicted", "inconclusive"}
    assert claims["Transfer speeds convergence"]["test"] == "> 0"
    assert len(claims) == 7  # every claim of the paper has a line, measured or not
    gabor_claim = claims["Gabor-like first-layer filters appear only with pretraining"]
    assert gabor_claim["per_seed"].keys() == {"0", "1"}  # every seed's filters, paired by seed
    gabor = json.loads((out / "gabor.json").read_text())
    assert {init: set(by_seed) for init, by_seed in gabor["scores"].items()} == {
        init: {"0", "1"} for init in ("random", "pretrained", "transfusion-1")
    }
    for picture in ("convergence.png", "filters.png", "representations.png"):
        with Image.open(out / picture) as image:
            assert image.size[0] > 300 and image.size[1] > 200

    # How much each layer moved: every block group of the model, one column pair per init, PWCCA in [0, 1]
    # where defined (48 eval images: too few datapoints for the widest layers, reported as missing).
    model = timm.create_model("mobilenetv1_025", num_classes=2)
    changes = list(csv.DictReader((out / "representations.csv").open()))
    assert [row["layer"] for row in changes] == default_layers(model)
    for init in ("random", "pretrained", "transfusion-1"):
        values = [float(row[f"{init}_pwcca"]) for row in changes if row[f"{init}_pwcca"]]
        assert len(values) >= 3 and all(0.0 <= v <= 1.0 + 1e-9 for v in values)
        assert changes[-1][f"{init}_pwcca"] == ""  # pre_logits: 48 datapoints for 256 features
    reports = json.loads((out / "representations.json").read_text())
    assert SimilarityReport.from_dict(reports["pretrained"]).model_b == "pretrained fine-tuned"
    assert "## How much fine-tuning changed each layer" in markdown and "| stem |" in markdown

    # Re-running the same command reuses the finished runs instead of training again.
    before = (out / "runs" / "random-seed0" / "model.safetensors").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "runs" / "random-seed0" / "model.safetensors").stat().st_mtime_ns == before


def _fake_run(folder: Path, *, seed: int, aucs: list[float | None], select: float | None = None) -> None:
    """A finished run folder as the loop writes it (summary.json from JSON: undefined AUCs are null)."""
    folder.mkdir(parents=True)
    records = [{"step": 10 * 2**i, "auc": auc} for i, auc in enumerate(aucs)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "final": {"auc": aucs[-1]},
        "eval_samples": 50,
        "multilabel": False,
        "seed": seed,
        "select": None if select is None else {"split": "val", "auc": select},
    }
    (folder / "summary.json").write_text(json.dumps(summary))


def _fake_cells(tmp_path: Path, runs: dict[tuple[str, float, int], list[float | None]], selects=None):
    base = TrainConfig(
        model="mobilenetv1_025", dataset="synthetic:fundus", output=str(tmp_path), max_steps=40
    )
    cells = []
    for (init, lr, seed), aucs in runs.items():
        folder = tmp_path / "runs" / f"{init}-lr{lr:g}-seed{seed}"
        _fake_run(folder, seed=seed, aucs=aucs, select=(selects or {}).get((init, lr, seed)))
        config = replace(base, init=init, lr=lr, seed=seed, output=str(folder))
        cells.append(Cell(folder.name, folder, config))
    return base, cells


def test_report_reads_finished_runs_with_undefined_aucs_and_lists_missing_ones(tmp_path):
    """Issue 10: a run whose AUC was undefined (null in summary.json) made the re-run report crash."""
    runs = {
        ("random", 1e-3, 0): [0.6, 0.7, None],
        ("random", 1e-3, 1): [0.6, 0.72, 0.8],
        ("pretrained", 1e-3, 0): [0.7, 0.8, 0.85],
        ("pretrained", 1e-3, 1): [0.72, 0.8, 0.86],
    }
    base, cells = _fake_cells(tmp_path, runs)
    missing_folder = tmp_path / "runs" / "meanvar-lr0.001-seed0"
    cells.append(
        Cell(
            "meanvar-lr0.001-seed0", missing_folder, replace(base, init="meanvar", output=str(missing_folder))
        )
    )
    paths = write_report(base, cells, source=None, analyses=False)
    markdown = paths["results.md"].read_text()
    assert "**Missing runs (1):** `meanvar-lr0.001-seed0`" in markdown
    rows = {row["init"]: row for row in csv.DictReader(paths["results.csv"].open())}
    assert rows["random"]["final_auc_n"] == "1" and float(rows["random"]["final_auc_mean"]) == pytest.approx(
        0.8
    )
    assert json.loads(rows["random"]["final_auc_per_seed"]) == [None, 0.8]
    findings = json.loads(paths["findings.json"].read_text())
    assert findings["missing_runs"] == ["meanvar-lr0.001-seed0"]
    meanvar = next(f for f in findings["findings"] if f["claim"].startswith("Mean Var"))
    assert meanvar["verdict"] == "inconclusive" and "no meanvar runs" in meanvar["note"]


def test_report_chooses_each_inits_lr_on_the_selection_split(tmp_path):
    runs, selects = {}, {}
    for lr, val in ((1e-3, 0.70), (3e-3, 0.80)):
        for seed in (0, 1):
            runs[("random", lr, seed)] = [0.6, 0.65 + lr, 0.7 + lr]
            selects[("random", lr, seed)] = val + 0.01 * seed
    for lr, val in ((1e-3, 0.90), (3e-3, 0.60)):
        for seed in (0, 1):
            runs[("pretrained", lr, seed)] = [0.7, 0.75 + lr, 0.8 + lr]
            selects[("pretrained", lr, seed)] = val
    base, cells = _fake_cells(tmp_path, runs, selects)
    paths = write_report(base, cells, source=None, analyses=False)
    rows = {row["init"]: row for row in csv.DictReader(paths["results.csv"].open())}
    assert float(rows["random"]["lr"]) == 3e-3 and float(rows["pretrained"]["lr"]) == 1e-3
    assert float(rows["pretrained"]["final_auc_mean"]) == pytest.approx(
        0.8 + 1e-3
    )  # test AUC of the chosen lr
    markdown = paths["results.md"].read_text()
    assert "| random | 0.705 ± 0.007 | 0.805 ± 0.007 | 0.003 (best mean val AUC) |" in markdown


def test_a_known_speed_up_is_supported_and_equal_inits_are_not(tmp_path):
    slow = [0.55, 0.6, 0.7, 0.8]
    fast = [0.75, 0.78, 0.8, 0.81]
    runs = {}
    for seed in range(3):
        jitter = 0.005 * seed
        runs[("random", 1e-3, seed)] = [v + jitter for v in slow]
        runs[("pretrained", 1e-3, seed)] = [v + jitter for v in fast]
        runs[("meanvar", 1e-3, seed)] = [v - jitter for v in slow]
    base, cells = _fake_cells(tmp_path, runs)
    findings = json.loads(write_report(base, cells, source=None, analyses=False)["findings.json"].read_text())
    claims = {f["claim"]: f for f in findings["findings"]}
    assert claims["Transfer speeds convergence"]["verdict"] == "supported"
    mean_var = claims["Mean Var recovers part of the speed-up"]
    assert mean_var["verdict"] == "inconclusive" and mean_var["low"] < 0 < mean_var["high"]


def test_transfusion_star_expands_to_every_block_group_and_sources_follow_the_registry(tmp_path):
    base = TrainConfig(
        model="mobilenetv1_025", dataset="synthetic:fundus", output=str(tmp_path), select_split="val"
    )
    cells = expand_grid(base, inits=["random", "transfusion-*"], seeds=1, source="hf-hub:org/weights")
    assert [c.config.init for c in cells] == ["random", *[f"transfusion-{k}" for k in range(5)]]
    assert cells[0].config.init_source is None and cells[1].config.init_source == "hf-hub:org/weights"
    assert all(c.config.save_predictions and c.config.select_split == "val" for c in cells)


def test_the_needs_source_rule_is_the_registrys_in_grid_and_report():
    """Issue 10: an init registered with needs_source=False trained without a source but the report gave it one."""
    from timm_transfusion.init.registry import _REGISTRY, register_init

    register_init("h12a-no-source-test", description="test", needs_source=False)(lambda ctx: {})
    try:
        assert init_source_for("h12a-no-source-test", "weights.safetensors") is None
        assert init_source_for("meanvar", "weights.safetensors") == "weights.safetensors"
    finally:
        del _REGISTRY["h12a-no-source-test"]


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


def test_models_axis_gives_each_model_its_cells_tables_and_findings(tmp_path):
    base = TrainConfig(model="mobilenetv1_025", dataset="synthetic:fundus", output=str(tmp_path))
    cells = expand_grid(
        base, inits=["random"], seeds=1, source=None, models=["mobilenetv1_025", "test_resnet"]
    )
    assert [c.name for c in cells] == ["mobilenetv1_025/random-seed0", "test_resnet/random-seed0"]
    assert [c.config.model for c in cells] == ["mobilenetv1_025", "test_resnet"]

    fake = []
    for model, shift in (("mobilenetv1_025", 0.0), ("test_resnet", 0.1)):
        for init in ("random", "pretrained"):
            folder = tmp_path / "runs" / model / f"{init}-seed0"
            _fake_run(folder, seed=0, aucs=[0.6 + shift, 0.7 + shift + (0.05 if init == "pretrained" else 0)])
            fake.append(
                Cell(
                    f"{model}/{init}-seed0", folder, replace(base, model=model, init=init, output=str(folder))
                )
            )
    paths = write_report(base, fake, source=None, analyses=False)
    markdown = paths["results.md"].read_text()
    assert "### mobilenetv1_025" in markdown and "### test_resnet" in markdown
    assert "## test_resnet: final AUC and convergence by init" in markdown
    rows = list(csv.DictReader(paths["results.csv"].open()))
    assert [(r["model"], r["init"]) for r in rows] == [
        ("mobilenetv1_025", "random"),
        ("mobilenetv1_025", "pretrained"),
        ("test_resnet", "random"),
        ("test_resnet", "pretrained"),
    ]
    claims = [f["claim"] for f in json.loads(paths["findings.json"].read_text())["findings"]]
    assert "test_resnet: Transfer speeds convergence" in claims
