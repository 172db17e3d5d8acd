"""Planned experiments run by workers, each cell its own process: shards, concurrent workers, `--jobs`,
killed cells and workers, and the report of a grid in progress (CPU, a tiny timm model, a few steps)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from timm_transfusion.cli import main
from timm_transfusion.files import read_jsonl
from timm_transfusion.run_folder import TIMING_FIELDS

ROOT = Path(__file__).resolve().parents[1]
GRID = [
    "--model",
    "test_resnet",
    "--dataset",
    "synthetic:fundus:train=48,val=16",
    "--inits",
    "random",
    "--seeds",
    "3",
    "--batch-size",
    "16",
    "--max-steps",
    "8",
    "--eval-every",
    "4",
    "--checkpoint-every",
    "2",
    "--keep-checkpoints",
    "0",
    "--no-progress",
    "--log-with",
    "none",
]
ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# A launcher that SIGKILLs at the n-th backward either the cell itself or its worker (the parent), then
# sleeps: when the worker is killed the cell must die with it, not finish the run on its own.
KILLING_LAUNCHER = """
import os, runpy, signal, sys, time
from accelerate import Accelerator

limit, whom, calls, original = int(os.environ["KILL_AT_BACKWARD"]), os.environ["KILL_WHOM"], [0], Accelerator.backward

def backward(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == limit:
        os.kill(os.getppid() if whom == "worker" else os.getpid(), signal.SIGKILL)
        time.sleep(60)
    return original(self, *args, **kwargs)

Accelerator.backward = backward
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@pytest.fixture(autouse=True)
def one_thread_per_cell(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


def plan(folder: Path) -> Path:
    assert main(["experiment", "plan", *GRID, "--output", str(folder)]) == 0
    return folder


def worker(folder: Path, *options: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "timm_transfusion.cli", "experiment", "run", str(folder), *options]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=300)
    return process.returncode, output


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def same_run(a: Path, b: Path) -> None:
    """Bit-identical weights, the same evaluations and summary (wall time aside)."""
    weights, expected = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert weights.keys() == expected.keys() and all((weights[k] == expected[k]).all() for k in expected)
    assert without_timing(read_jsonl(a / "metrics.jsonl")) == without_timing(read_jsonl(b / "metrics.jsonl"))
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (a, b)]
    assert [{k: v for k, v in s.items() if k != "wall_time_s"} for s in summaries][0] == {
        k: v for k, v in summaries[1].items() if k != "wall_time_s"
    }


@pytest.fixture(scope="module")
def two_jobs_grid(tmp_path_factory) -> Path:
    """The grid run by one worker with --jobs 2 (two cells at once on the 2 cores)."""
    folder = tmp_path_factory.mktemp("jobs2") / "exp"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ENV.items():
            patch.setenv(key, value)
        plan(folder)
        assert main(["experiment", "run", str(folder), "--jobs", "2", "--no-progress"]) == 0
    return folder


def test_two_jobs_train_two_cells_at_once(two_jobs_grid):
    def interval(name: str) -> tuple[float, float]:
        run = two_jobs_grid / "runs" / name
        return (run / "train_args.json").stat().st_mtime, (run / "summary.json").stat().st_mtime

    (start0, end0), (start1, end1) = interval("random-seed0"), interval("random-seed1")
    assert start1 < end0 and start0 < end1  # both were training at the same time
    (start2, _), last_end = interval("random-seed2"), min(end0, end1)
    assert start2 >= last_end  # the third waited for a free slot


def test_three_concurrent_shards_give_the_runs_and_report_of_a_sequential_run(tmp_path, two_jobs_grid):
    sequential, sharded = plan(tmp_path / "sequential"), plan(tmp_path / "sharded")
    # A fourth worker asks for cell 0 while shard 0 runs it: the cell is trained once.
    workers = [worker(sharded, "--shard", f"{i}/3", "--no-progress") for i in range(3)]
    workers.append(worker(sharded, "--cell", "0", "--no-progress"))
    assert main(["experiment", "run", str(sequential), "--no-progress"]) == 0
    outputs = [finish(w) for w in workers]
    assert all(code == 0 for code, _ in outputs), outputs
    starts = [
        line for _, out in outputs for line in out.splitlines() if re.match(r"cell \d \S+: started", line)
    ]
    assert sorted(line.split(":")[0] for line in starts) == [f"cell {i} random-seed{i}" for i in range(3)]
    rivals = [outputs[0][1], outputs[3][1]]  # both asked for cell 0: one trained it, the other left it
    assert sum("1 trained" in out for out in rivals) == 1
    assert sum("1 held by other workers" in out or "1 already finished" in out for out in rivals) == 1
    log = (sharded / "cells" / "random-seed0.log").read_text()
    assert log.count("=== ") == 1 and log.count("run complete") == 1

    for name in ("random-seed0", "random-seed1", "random-seed2"):
        same_run(sharded / "runs" / name, sequential / "runs" / name)
        same_run(two_jobs_grid / "runs" / name, sequential / "runs" / name)
    for folder in (sequential, sharded):
        assert main(["experiment", "report", str(folder)]) == 0
    for name in ("results.md", "results.csv", "findings.json", "status.md"):
        assert (sharded / name).read_text() == (sequential / name).read_text()
    assert "3/3 cells finished" in (sharded / "status.md").read_text()


def pid_gone(pid: int, within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cells die with their worker on Linux")
def test_killed_cells_are_resumed_by_the_next_worker_and_reported_meanwhile(tmp_path, two_jobs_grid, capsys):
    exp = plan(tmp_path / "exp")
    shutil.copytree(two_jobs_grid / "runs" / "random-seed0", exp / "runs" / "random-seed0")  # portable
    launcher = tmp_path / "killing_launcher.py"
    launcher.write_text(KILLING_LAUNCHER)
    under_launcher = ["--cell", "1", "--launcher", f"{sys.executable} {launcher}", "--no-progress"]

    # The worker is SIGKILLed mid-run (a pre-empted job): its cell dies with it, the lock stays behind.
    code, output = finish(worker(exp, *under_launcher, env={"KILL_AT_BACKWARD": "6", "KILL_WHOM": "worker"}))
    assert code == -9
    cell_pid = int(re.search(r"cell 1 random-seed1: started \(pid (\d+)", output).group(1))
    assert pid_gone(cell_pid), "the cell outlived its worker"
    assert (exp / "cells" / "random-seed1.lock").exists()
    assert not (exp / "runs" / "random-seed1" / "summary.json").exists()

    # The report of the half-finished grid: the finished cell reported, the others listed.
    assert main(["experiment", "report", str(exp)]) == 0
    printed = capsys.readouterr().out
    assert "1/3 cells finished, 1 interrupted, 1 missing" in printed
    assert re.search(
        r"\| 1 \| random-seed1 \| interrupted \| stale lock \(pid \d+ on .*\); resumes from step_00000004",
        printed,
    )
    assert "| 2 | random-seed2 | missing |" in printed
    results = (exp / "results.md").read_text()
    assert re.search(r"^\| random \| [^|]+ \| 1 \|", results, re.M)  # the finished seed: 1 of random
    assert "## Grid status: this report covers the finished cells only" in results

    # The next worker breaks the stale lock; this time the cell itself is SIGKILLed: recorded as failed.
    code, output = finish(worker(exp, *under_launcher, env={"KILL_AT_BACKWARD": "2", "KILL_WHOM": "cell"}))
    assert code == 1 and "cell 1 random-seed1: FAILED (exit code -9)" in output
    assert main(["experiment", "report", str(exp)]) == 0
    assert re.search(
        r"\| 1 \| random-seed1 \| failed \| exit code -9; log cells/random-seed1.log", capsys.readouterr().out
    )

    # The next worker resumes it from its newest checkpoint; it ends as if never interrupted.
    assert main(["experiment", "run", str(exp), "--cell", "1", "--no-progress"]) == 0
    log = (exp / "cells" / "random-seed1.log").read_text()
    assert log.count("from step_00000004 (step 4)") == 2 and log.count("run complete") == 1
    same_run(exp / "runs" / "random-seed1", two_jobs_grid / "runs" / "random-seed1")
    assert not (exp / "cells" / "random-seed1.failed.json").exists()
    assert not (exp / "cells" / "random-seed1.lock").exists()


def test_a_second_training_in_one_process_matches_a_fresh_process_or_is_refused(tmp_path, one_torch_thread):
    """Without accelerate's private state reset, train() may run again in a process with the same precision
    (the result equals a fresh process's, bit for bit); another precision is refused before anything is
    written, naming the way out."""
    from timm_transfusion.train import TrainConfig, TrainConfigError, train

    options = dict(
        model="test_resnet", dataset="synthetic:fundus:train=32,val=16", batch_size=16, max_steps=3
    )
    options.update(eval_every=3, progress=False, log_with="none")
    train(TrainConfig(**options, output=str(tmp_path / "first"), seed=1))
    train(TrainConfig(**options, output=str(tmp_path / "second"), seed=2))
    fresh = tmp_path / "fresh"
    script = [sys.executable, str(ROOT / "scripts" / "train.py"), "--model", "test_resnet", "--seed", "2"]
    script += ["--dataset", options["dataset"], "--batch-size", "16", "--max-steps", "3", "--eval-every", "3"]
    subprocess.run(
        [*script, "--no-progress", "--log-with", "none", "--output", str(fresh)],
        check=True,
        env={**os.environ, **ENV},
        cwd=ROOT,
        capture_output=True,
    )
    same_run(tmp_path / "second", fresh)
    with pytest.raises(
        TrainConfigError, match=r"--mixed-precision 'bf16': this process already trained.*own process"
    ):
        train(TrainConfig(**options, output=str(tmp_path / "bf16"), mixed_precision="bf16"))
    assert not (tmp_path / "bf16").exists()


@pytest.mark.slow
def test_a_cell_can_be_multi_process_under_torchrun(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    one_seed = [*GRID[: GRID.index("--seeds") + 1], "1", *GRID[GRID.index("--seeds") + 2 :]]
    exp = tmp_path / "exp"
    assert main(["experiment", "plan", *one_seed, "--output", str(exp)]) == 0
    torchrun = f"{sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_port {port}"
    assert main(["experiment", "run", str(exp), "--launcher", torchrun, "--no-progress"]) == 0
    summary = json.loads((exp / "runs" / "random-seed0" / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["steps"] == 8
