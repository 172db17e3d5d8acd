"""Launchers and interruptions: torchrun with 2 CPU processes (gloo), and kill-and-resume bit-identity."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from timm_transfusion.run_folder import TIMING_FIELDS
from timm_transfusion.train import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
COMMON = ["--model", "test_resnet", "--no-progress", "--log-with", "none", "--workers", "0"]

# Wraps scripts/train.py's main and SIGKILLs its own process at a chosen point: inside the n-th backward,
# or right after the n-th save_state wrote its files (before the checkpoint is renamed into place).
KILLING_LAUNCHER = """
import os, signal, sys
from accelerate import Accelerator
from timm_transfusion.train import main

limits = {"backward": int(os.environ.get("KILL_AT_BACKWARD", 0)), "save": int(os.environ.get("KILL_IN_SAVE", 0))}
calls = {"backward": 0, "save": 0}
original = {"backward": Accelerator.backward, "save": Accelerator.save_state}

def counted(name):
    def wrapper(self, *args, **kwargs):
        if name == "backward" and calls[name] + 1 == limits[name]:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original[name](self, *args, **kwargs)
        calls[name] += 1
        if name == "save" and calls[name] == limits[name]:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapper

Accelerator.backward, Accelerator.save_state = counted("backward"), counted("save")
sys.exit(main())
"""


def run(command: list[str], env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
        )
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_torchrun_evaluates_every_sample_once_with_the_single_process_auc(tmp_path, retinamnist):
    data = ["--dataset", f"npz:{retinamnist}", "--eval-split", "test", "--eval-batch-size", "48"]
    two = tmp_path / "two"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    ]
    run(
        [
            *torchrun,
            str(TRAIN_SCRIPT),
            *COMMON,
            *data,
            "--batch-size",
            "16",
            "--max-steps",
            "3",
            "--eval-every",
            "3",
            "--save-predictions",
            "--output",
            str(two),
        ]
    )
    one = tmp_path / "one"
    run(
        [
            sys.executable,
            str(TRAIN_SCRIPT),
            *COMMON,
            *data,
            "--init",
            "pretrained",
            "--init-source",
            f"local-dir:{two}",
            "--max-steps",
            "0",
            "--save-predictions",
            "--output",
            str(one),
        ]
    )
    summary_two = json.loads((two / "summary.json").read_text())
    summary_one = json.loads((one / "summary.json").read_text())
    assert summary_two["num_processes"] == 2 and summary_one["num_processes"] == 1
    # 400 test images over 2 processes x 48 per batch: uneven shards, padding must be dropped.
    predictions_two, predictions_one = (
        np.load(two / "eval_predictions.npz"),
        np.load(one / "eval_predictions.npz"),
    )
    assert sorted(predictions_two["index"].tolist()) == list(range(400))
    assert summary_two["final"]["num_samples"] == summary_one["final"]["num_samples"] == 400
    order = np.argsort(predictions_two["index"])
    assert np.allclose(predictions_two["scores"][order], predictions_one["scores"], atol=1e-5)
    assert summary_two["final"]["auc"] == pytest.approx(summary_one["final"]["auc"], abs=1e-6)
    # A fresh interpreter with stock timm only (no timm_transfusion import) loads the 2-process run.
    check = (
        "import sys, timm, torch; from safetensors.torch import load_file; "
        f"m = timm.create_model('local-dir:{two}', pretrained=True); "
        f"saved = load_file('{two / 'model.safetensors'}'); "
        "assert 'timm_transfusion' not in sys.modules; "
        "assert all(torch.equal(t, m.state_dict()[k]) for k, t in saved.items()); print('loaded', m.num_classes)"
    )
    assert "loaded 5" in run([sys.executable, "-c", check]).stdout


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["device", "pil"])
def test_killed_and_resumed_run_ends_bit_identical(tmp_path, pipeline):
    launcher = tmp_path / "killing_launcher.py"
    launcher.write_text(KILLING_LAUNCHER)
    args = [
        *COMMON,
        "--pipeline",
        pipeline,
        "--dataset",
        "synthetic:fundus:train=96,val=32",
        "--batch-size",
        "16",
        "--grad-accum",
        "2",
        "--max-steps",
        "24",
        "--eval-every",
        "4",
        "--checkpoint-every",
        "4",
        "--keep-checkpoints",
        "0",
    ]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run([sys.executable, str(TRAIN_SCRIPT), *args, "--output", str(reference)])

    # Killed inside the 2nd checkpoint write: the half-written step 8 must not be trusted.
    killed = run(
        [sys.executable, str(launcher), *args, "--output", str(resumed)], {"KILL_IN_SAVE": "2"}, check=False
    )
    assert killed.returncode == -9
    assert not (resumed / "summary.json").exists()
    # --keep-checkpoints 0 keeps every checkpoint: step 4 stays beside the half-written step 8
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == [
        ".tmp-step_00000008",
        "step_00000004",
    ]

    # Resumed from step 4, then killed mid-accumulation of step 10 (after the step 8 checkpoint).
    killed = run(
        [sys.executable, str(launcher), *args, "--resume", "--output", str(resumed)],
        {"KILL_AT_BACKWARD": "11"},
        check=False,
    )
    assert killed.returncode == -9 and "step_00000004 (step 4)" in killed.stdout
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step_00000004", "step_00000008"]

    finished = run([sys.executable, str(TRAIN_SCRIPT), *args, "--resume", "--output", str(resumed)])
    assert "step_00000008 (step 8)" in finished.stdout
    weights, expected = load_file(resumed / "model.safetensors"), load_file(reference / "model.safetensors")
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)

    def without_timing(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]

    assert without_timing(read_jsonl(resumed / "metrics.jsonl")) == without_timing(
        read_jsonl(reference / "metrics.jsonl")
    )
    # every 4 steps, plus the log-spaced early evaluations (10, 20, ...; 20 is on both schedules)
    assert [r["step"] for r in read_jsonl(resumed / "metrics.jsonl")] == [4, 8, 10, 12, 16, 20, 24]


@pytest.mark.slow
def test_accelerate_launch_runs_the_script(tmp_path):
    out = tmp_path / "run"
    accelerate = Path(sys.executable).with_name("accelerate")
    result = run(
        [
            str(accelerate),
            "launch",
            "--num_processes",
            "1",
            str(TRAIN_SCRIPT),
            *COMMON,
            "--dataset",
            "synthetic:fundus:train=32,val=16",
            "--batch-size",
            "16",
            "--max-steps",
            "2",
            "--eval-every",
            "2",
            "--output",
            str(out),
        ]
    )
    assert "run complete" in result.stdout
    assert json.loads((out / "summary.json").read_text())["steps"] == 2


@pytest.mark.slow
def test_resume_between_evaluations_keeps_the_training_loss(tmp_path):
    """Checkpoints every 2 steps, evaluations every 4: the loss summed since the last evaluation survives."""
    launcher = tmp_path / "killing_train.py"
    launcher.write_text(KILLING_LAUNCHER)
    args = [*COMMON, "--dataset", "synthetic:fundus:train=64,val=16", "--batch-size", "16"]
    args += ["--max-steps", "8", "--eval-every", "4", "--checkpoint-every", "2", "--keep-checkpoints", "0"]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run([sys.executable, str(TRAIN_SCRIPT), *args, "--output", str(reference)])
    killed = run(
        [sys.executable, str(launcher), *args, "--output", str(resumed)],
        {"KILL_AT_BACKWARD": "4"},
        check=False,
    )
    assert killed.returncode == -9
    finished = run([sys.executable, str(TRAIN_SCRIPT), *args, "--resume", "--output", str(resumed)])
    assert "step_00000002 (step 2)" in finished.stdout
    losses = [
        [r["train_loss"] for r in read_jsonl(folder / "metrics.jsonl")] for folder in (resumed, reference)
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 2
