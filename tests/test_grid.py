"""Planned experiments without training: plan.json, shards, job environments, cell locks, cell states."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import timm
from safetensors.torch import save_file

from timm_transfusion.cli import main
from timm_transfusion.train import TrainConfig
from timm_transfusion.train.cell_lock import CellLock, is_stale, read_holder
from timm_transfusion.train.errors import SkippedCellWarning
from timm_transfusion.train.grid import (
    PlanError,
    build_plan,
    load_plan,
    parse_shard,
    select_cells,
    shard_from_slurm,
    write_plan,
)
from timm_transfusion.train.grid_report import cell_state
from timm_transfusion.train.workers import failure_path, job_environment, lock_path

BASE = TrainConfig(model="test_resnet", dataset="synthetic:fundus:train=32,val=16", output="", max_steps=2)


def plan_in(folder, base=BASE, inits=("random", "meanvar"), seeds=(0, 1, 2)):
    return build_plan(folder, base, inits=list(inits), seeds=list(seeds), source="resnet18.a1_in1k")


def test_plan_lists_every_cell_with_its_run_folder_and_full_config(tmp_path):
    plan = plan_in(tmp_path / "exp")
    assert write_plan(plan) == "created"
    loaded = load_plan(tmp_path / "exp")
    assert [c.name for c in loaded.cells] == [
        f"{i}-seed{s}" for i in ("random", "meanvar") for s in (0, 1, 2)
    ]
    assert [c.index for c in loaded.cells] == list(range(6))
    cell = loaded.cell("meanvar-seed1")
    config = loaded.train_config(cell)
    assert config.output == str(tmp_path / "exp" / "runs" / "meanvar-seed1")
    assert (config.init, config.seed, config.init_seed, config.resume) == ("meanvar", 1, 1, True)
    assert (
        config.init_source == "resnet18.a1_in1k" and loaded.train_config(loaded.cell(0)).init_source is None
    )
    assert config.max_steps == 2 and cell.folder == "runs/meanvar-seed1"  # relative: the folder can move


def test_replanning_the_same_grid_is_a_no_op_and_another_grid_needs_overwrite(tmp_path):
    folder = tmp_path / "exp"
    write_plan(plan_in(folder))
    before = (folder / "plan.json").stat().st_mtime_ns
    assert write_plan(plan_in(folder)) == "unchanged"
    assert (folder / "plan.json").stat().st_mtime_ns == before
    with pytest.raises(PlanError, match=r"different grid \(base.lr: 0.001 -> 0.01\).*--overwrite"):
        write_plan(plan_in(folder, base=TrainConfig(**{**BASE.to_json(), "lr": 0.01})))
    with pytest.raises(PlanError, match=r"seeds: \[0, 1, 2\] -> \[0, 1\]"):
        write_plan(plan_in(folder, seeds=(0, 1)))
    assert load_plan(folder).grid["seeds"] == [0, 1, 2]
    # Options that do not change what a cell computes (progress, workers, ...) are no new grid.
    assert (
        write_plan(plan_in(folder, base=TrainConfig(**{**BASE.to_json(), "progress": False}))) == "unchanged"
    )
    other = TrainConfig(**{**BASE.to_json(), "lr": 0.01})
    assert write_plan(plan_in(folder, base=other), overwrite=True) == "replaced"
    replaced = load_plan(folder).train_config(load_plan(folder).cell(0))
    assert replaced.lr == 0.01 and replaced.overwrite  # the old grid's runs in its folder are replaced


def test_plan_refuses_a_folder_that_holds_something_else(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "notes.txt").write_text("mine")
    with pytest.raises(PlanError, match="not empty and holds no plan"):
        write_plan(plan_in(tmp_path / "exp"))
    with pytest.raises(PlanError, match="does not exist: write it first"):
        load_plan(tmp_path / "nothing")


def test_shards_partition_the_cells_and_mix_the_inits(tmp_path):
    plan = plan_in(tmp_path)
    shards = [select_cells(plan, shard=(i, 4)) for i in range(4)]
    indices = sorted(c.index for shard in shards for c in shard)
    assert indices == list(range(6))
    assert {c.config["init"] for c in shards[0]} == {"random", "meanvar"}  # cells 0 and 4
    assert select_cells(plan, cell="3") == [plan.cells[3]] and len(select_cells(plan)) == 6
    with pytest.raises(PlanError, match="cells 0..5"):
        select_cells(plan, cell=6)
    for bad in ("4/4", "1", "a/b", "-1/3"):
        with pytest.raises(PlanError, match="--shard"):
            parse_shard(bad)


def test_a_slurm_array_task_is_its_shard():
    assert shard_from_slurm({}) is None
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_slurm(env) == (2, 4)
    assert shard_from_slurm({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "3"}) == (0, 3)


def test_jobs_get_their_own_gpus_or_a_share_of_the_cpus():
    gpus = ["0", "1", "2", "3"]
    assert [job_environment(s, 2, gpus=gpus, cpus=[])["CUDA_VISIBLE_DEVICES"] for s in (0, 1)] == [
        "0,1",
        "2,3",
    ]
    assert [job_environment(s, 3, gpus=["0", "1"], cpus=[])["CUDA_VISIBLE_DEVICES"] for s in range(3)] == [
        "0",
        "1",
        "0",
    ]
    with_gpus = job_environment(1, 2, gpus=gpus, cpus=list(range(16)))
    assert with_gpus["OMP_NUM_THREADS"] == "8" and "TRANSFUSION_CPUS" not in with_gpus
    env = [job_environment(s, 2, gpus=[], cpus=[0, 1, 2, 3]) for s in (0, 1)]
    assert [e["TRANSFUSION_CPUS"] for e in env] == ["0,1", "2,3"] and env[0]["OMP_NUM_THREADS"] == "2"
    one = job_environment(0, 1, gpus=[], cpus=[0, 1], threads=1)
    assert one == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # sequential: the user's thread count
    assert job_environment(1, 4, gpus=[], cpus=[0, 1])["OMP_NUM_THREADS"] == "1"


def race_for(locks: list[CellLock]) -> list[CellLock]:
    """Every lock tries to acquire at the same moment (one thread each); returns those that got it."""
    barrier, won = threading.Barrier(len(locks)), []

    def take(lock):
        barrier.wait()
        if lock.acquire():
            won.append(lock)

    threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


def test_only_one_of_many_racing_workers_takes_a_lock(tmp_path):
    path = tmp_path / "cell.lock"
    locks = [CellLock(path) for _ in range(8)]
    won = race_for(locks)
    assert len(won) == 1 and read_holder(path).token == won[0].token
    won[0].release()
    assert not path.exists() and locks[1].acquire()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(path, *, pid, host, age=0.0):
    path.write_text(json.dumps({"pid": pid, "host": host, "token": "old", "started": time.time() - age}))
    os.utime(path, (time.time() - age, time.time() - age))


def test_a_lock_of_a_dead_process_is_broken_by_exactly_one_of_racing_workers(tmp_path):
    path = tmp_path / "cell.lock"
    write_lock(path, pid=dead_pid(), host=socket.gethostname())
    assert is_stale(read_holder(path), stale_after=600)
    locks = [CellLock(path) for _ in range(8)]
    won = race_for(locks)
    assert len(won) == 1 and read_holder(path).token == won[0].token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.lock"]  # nothing left aside


def test_a_lock_on_another_host_is_stale_only_without_heartbeat(tmp_path):
    path = tmp_path / "cell.lock"
    write_lock(path, pid=1, host="node-that-died", age=30)
    assert not CellLock(path, stale_after=60).acquire()  # its heartbeat is recent enough
    write_lock(path, pid=1, host="node-that-died", age=120)
    lock = CellLock(path, stale_after=60)
    assert lock.acquire() and read_holder(path).pid == os.getpid()
    assert lock.touch() and read_holder(path).heartbeat_age < 5
    write_lock(path, pid=os.getpid(), host=socket.gethostname())  # broken and re-taken by someone else
    assert not lock.touch()
    lock.release()
    assert path.exists()  # not ours any more: left alone


def test_cell_states_say_what_the_next_worker_will_do(tmp_path):
    plan = plan_in(tmp_path)
    write_plan(plan)
    cell = plan.cells[0]
    assert cell_state(plan, cell).state == "missing"
    checkpoint = plan.run_folder(cell) / "checkpoints" / "step_00000004"
    checkpoint.mkdir(parents=True)
    assert cell_state(plan, cell).state == "interrupted"
    assert cell_state(plan, cell).detail == "resumes from step_00000004"
    lock = CellLock(lock_path(plan, cell))
    assert lock.acquire()
    held = cell_state(plan, cell)
    assert held.state == "running" and f"pid {os.getpid()}" in held.detail
    lock.release()
    write_lock(lock_path(plan, cell), pid=dead_pid(), host=socket.gethostname())
    assert cell_state(plan, cell).state == "interrupted" and "stale lock" in cell_state(plan, cell).detail
    failure_path(plan, cell).write_text(json.dumps({"reason": "exit code -9"}))
    failed = cell_state(plan, cell)
    assert failed.state == "failed" and failed.detail.startswith("exit code -9; log cells/random-seed0.log")
    (plan.run_folder(cell) / "summary.json").write_text("{}")
    assert cell_state(plan, cell).state == "finished"


def test_experiment_verbs_report_user_mistakes_in_one_line(tmp_path, capsys):
    assert main(["experiment", "run", str(tmp_path / "none")]) == 2
    assert "plan.json does not exist" in capsys.readouterr().err
    args = ["experiment", "plan", "--model", "test_resnet", "--dataset", "synthetic:fundus", "--seeds", "2"]
    assert main([*args, "--inits", "random", "--output", str(tmp_path / "exp")]) == 0
    assert "(created): 2 cells" in capsys.readouterr().out
    assert main([*args, "--inits", "random,bogus", "--output", str(tmp_path / "other")]) == 2
    assert "unknown init 'bogus'" in capsys.readouterr().err
    assert main(["experiment", "run", str(tmp_path / "exp"), "--shard", "2/2"]) == 2
    assert "--shard '2/2': I must be in 0..N-1" in capsys.readouterr().err
    assert main(["experiment", "run", str(tmp_path / "exp"), "--jobs", "0"]) == 2
    assert main(["experiment", "report", str(tmp_path / "exp")]) == 0
    assert "0/2 cells finished, 2 missing" in capsys.readouterr().out


SLIM_PAIR = ["mobilenetv1_025", "mobilenetv1_025_slim3_w50"]  # the slim model reuses block groups 0..3


def test_a_slim_model_next_to_its_base_leaves_out_each_init_it_cannot_take_with_a_warning(tmp_path):
    base = TrainConfig(model="mobilenetv1_025", dataset="synthetic:fundus", output="", max_steps=2)
    with pytest.warns(SkippedCellWarning) as caught:
        plan = build_plan(
            tmp_path / "exp",
            base,
            inits=["random", "pretrained", "transfusion-4"],
            seeds=[0],
            source=None,
            models=SLIM_PAIR,
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedCellWarning)]
    assert len(messages) == 2
    assert messages[0].startswith("experiment: skipping mobilenetv1_025_slim3_w50 x pretrained: ")
    assert messages[1].startswith("experiment: skipping mobilenetv1_025_slim3_w50 x transfusion-4: ")
    assert [c.name for c in plan.cells] == [
        *(f"mobilenetv1_025/{i}-seed0" for i in ("random", "pretrained", "transfusion-4")),
        "mobilenetv1_025_slim3_w50/random-seed0",
    ]
    write_plan(plan)
    saved = json.loads((tmp_path / "exp" / "plan.json").read_text())["skipped"]
    assert [(s["model"], s["init"]) for s in saved] == [
        ("mobilenetv1_025_slim3_w50", "pretrained"),
        ("mobilenetv1_025_slim3_w50", "transfusion-4"),
    ]
    assert "thinner" in saved[0]["reason"]
    assert load_plan(tmp_path / "exp").skipped == plan.skipped


def test_a_grid_of_one_model_skips_nothing(tmp_path):
    plan = plan_in(tmp_path / "exp")
    assert plan.skipped == ()
    write_plan(plan)
    assert json.loads((tmp_path / "exp" / "plan.json").read_text())["skipped"] == []


def test_the_cli_shows_every_skipped_pair_once_and_the_status_lists_them(tmp_path):
    """Python shows a warning once per location and text: each pair has its own text, so each shows."""
    out, source = tmp_path / "exp", tmp_path / "source.safetensors"
    save_file(timm.create_model("mobilenetv1_025").state_dict(), source)  # any weights of the base model
    args = ["--model", "mobilenetv1_025", "--models", ",".join(SLIM_PAIR), "--dataset", "synthetic:fundus"]
    args += ["--inits", "random,pretrained,transfusion-4", "--seeds", "1", "--source", str(source)]
    args += ["--output", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # Python's default filters
    plan = subprocess.run(
        [sys.executable, "-m", "timm_transfusion.cli", "experiment", "plan", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for init in ("pretrained", "transfusion-4"):
        line = f"SkippedCellWarning: experiment: skipping mobilenetv1_025_slim3_w50 x {init}:"
        assert plan.stderr.count(line) == 1, plan.stderr
    assert "(created): 4 cells" in plan.stdout
    report = subprocess.run(
        [sys.executable, "-m", "timm_transfusion.cli", "experiment", "report", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Left out of the grid (2: the model cannot take the init):" in report.stdout
    status = json.loads((out / "status.json").read_text())
    assert [s["init"] for s in status["skipped"]] == ["pretrained", "transfusion-4"]
    assert "- `mobilenetv1_025_slim3_w50` × `pretrained`: " in (out / "status.md").read_text()
