"""A worker: runs the cells it is given, each in its own process, up to ``jobs`` at once.

Every cell is an ordinary run folder trained by ``python -m timm_transfusion.train.cell EXP I`` (optionally
under a launcher such as ``accelerate launch --num_processes 8`` or ``torchrun``), so checkpoints and
bit-identical resume carry over, and a cell that crashes takes only itself down. The worker holds each
cell's lock (``EXP/cells/NAME.lock``) while it runs, beats its heartbeat, skips finished cells and cells
another live worker holds, and records a failure (``NAME.failed.json``, log in ``NAME.log``) for the report.
Concurrent jobs get their own GPUs (``CUDA_VISIBLE_DEVICES``) when there are GPUs, and a share of the CPU
threads (``OMP_NUM_THREADS`` and a CPU affinity) otherwise.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tqdm.auto import tqdm

from ..run_folder import SUMMARY, write_json_atomic
from .cell_lock import DEFAULT_STALE_AFTER, CellLock
from .grid import Plan, PlanCell, PlanError

CELLS_DIR = "cells"
POLL_S = 0.2


def lock_path(plan: Plan, cell: PlanCell) -> Path:
    return plan.folder / CELLS_DIR / f"{cell.name}.lock"


def failure_path(plan: Plan, cell: PlanCell) -> Path:
    return plan.folder / CELLS_DIR / f"{cell.name}.failed.json"


def log_path(plan: Plan, cell: PlanCell) -> Path:
    return plan.folder / CELLS_DIR / f"{cell.name}.log"


def is_finished(plan: Plan, cell: PlanCell) -> bool:
    """summary.json is written last, so its presence marks a finished run."""
    return (plan.run_folder(cell) / SUMMARY).is_file()


@dataclass
class WorkerResult:
    """What one worker did: cells it trained, found finished, found held by another worker, saw fail."""

    trained: list[str] = field(default_factory=list)
    already_finished: list[str] = field(default_factory=list)
    held_elsewhere: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def visible_gpus(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The GPUs this worker may hand out: CUDA_VISIBLE_DEVICES when set, else every device torch sees."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [d.strip() for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def job_environment(
    slot: int, jobs: int, *, gpus: list[str], cpus: list[int], threads: int | None = None
) -> dict[str, str]:
    """The environment of job ``slot`` of ``jobs``: ``threads`` (default: the CPU count) // jobs CPU threads
    (at least 1) and, with GPUs, its own GPUs (an equal split; round-robin when there are fewer GPUs than
    jobs), without GPUs its own CPUs."""
    per_job = max((threads or len(cpus)) // jobs, 1)
    env = {"OMP_NUM_THREADS": str(per_job), "MKL_NUM_THREADS": str(per_job)}
    if gpus:
        share = max(len(gpus) // jobs, 1)
        start = (slot * share) % len(gpus)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[start : start + share])
    elif jobs > 1 and len(cpus) >= jobs:
        share = len(cpus) // jobs
        env["TRANSFUSION_CPUS"] = ",".join(str(c) for c in cpus[slot * share : (slot + 1) * share])
    return env


def cell_command(plan: Plan, cell: PlanCell, launcher: str | None = None) -> list[str]:
    """The command that trains one cell: the cell module directly, or through a launcher's ``-m`` flag."""
    module = ["-m", "timm_transfusion.train.cell", str(plan.folder), str(cell.index)]
    if not launcher:
        return [sys.executable, *module]
    # The guard makes the launcher die with this worker (Linux), then becomes the launcher (exec).
    guard = [sys.executable, "-m", "timm_transfusion.train.cell", "--exec", "--"]
    return [*guard, *shlex.split(launcher), *module]


class _Heartbeat(threading.Thread):
    """Refreshes every held lock's modification time, so other workers see the cells are alive."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval, self.locks, self.stop = interval, set(), threading.Event()
        self.lost: set[CellLock] = set()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            for lock in list(self.locks):
                if not lock.touch():
                    self.lost.add(lock)


@dataclass
class _Job:
    cell: PlanCell
    lock: CellLock
    process: subprocess.Popen
    log: IO[str]
    started: float


def run_cells(
    plan: Plan,
    cells: list[PlanCell],
    *,
    jobs: int = 1,
    launcher: str | None = None,
    stale_after: float = DEFAULT_STALE_AFTER,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> WorkerResult:
    """Train ``cells`` of ``plan`` in separate processes, ``jobs`` at a time; returns what happened."""
    if jobs < 1:
        raise PlanError(f"--jobs must be >= 1, got {jobs}")
    gpus = visible_gpus()
    cpus = _available_cpus()
    threads = int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS", "").isdigit() else None
    result, pending, running = WorkerResult(), list(cells), {}
    heartbeat = _Heartbeat(interval=max(min(stale_after / 10, 30.0), 0.05))
    heartbeat.start()
    bar = tqdm(total=len(cells), unit="cell", disable=not progress, desc=f"cells ({jobs} at a time)")
    previous_term = _forward_sigterm()
    try:
        while pending or running:
            free = [s for s in range(jobs) if s not in running]
            while pending and free:
                cell = pending.pop(0)
                job = _start(
                    plan,
                    cell,
                    launcher,
                    stale_after,
                    result,
                    env=job_environment(free[0], jobs, gpus=gpus, cpus=cpus, threads=threads),
                )
                if job is None:
                    bar.update(1)
                    continue
                heartbeat.locks.add(job.lock)
                running[free.pop(0)] = job
                say(f"cell {cell.index} {cell.name}: started (pid {job.process.pid}, log {job.log.name})")
            for slot, job in list(running.items()):
                if job.process.poll() is None:
                    if job.lock in heartbeat.lost:  # another worker took the cell as stale: leave it to them
                        job.process.terminate()
                    continue
                del running[slot]
                heartbeat.locks.discard(job.lock)
                say(_finish(plan, job, result, lost=job.lock in heartbeat.lost))
                bar.update(1)
            if running:
                time.sleep(POLL_S)
    finally:
        _stop(plan, list(running.values()))
        heartbeat.stop.set()
        bar.close()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    return result


def _available_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _stop(plan: Plan, jobs: list[_Job]) -> None:
    """Interrupted (Ctrl-C, SIGTERM): stop the running cells, record them, free their locks."""
    for job in jobs:
        job.process.terminate()
    for job in jobs:
        _wait(job.process)
        _record_failure(plan, job, reason="interrupted")
        job.log.close()
        job.lock.release()


def _forward_sigterm() -> Callable | int | None:
    """A SIGTERM (Slurm pre-emption, scancel) unwinds the worker like Ctrl-C, so cells stop and locks go."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, signal.default_int_handler)


def _start(
    plan: Plan, cell: PlanCell, launcher: str | None, stale_after: float, result: WorkerResult, *, env: dict
) -> _Job | None:
    if is_finished(plan, cell):
        result.already_finished.append(cell.name)
        return None
    lock = CellLock(lock_path(plan, cell), stale_after=stale_after)
    if not lock.acquire():
        result.held_elsewhere.append(cell.name)
        return None
    if is_finished(plan, cell):  # finished by another worker between the first look and the lock
        lock.release()
        result.already_finished.append(cell.name)
        return None
    log_path(plan, cell).parent.mkdir(parents=True, exist_ok=True)  # names like model/init-seed0 nest
    log = log_path(plan, cell).open("a", encoding="utf-8")
    log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {socket.gethostname()} pid {os.getpid()}\n")
    log.flush()
    child_env = {**os.environ, **env, "TRANSFUSION_WORKER_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    try:
        process = subprocess.Popen(
            cell_command(plan, cell, launcher),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
        )
    except OSError:  # e.g. a launcher that does not exist: free the cell for others, say why
        log.close()
        lock.release()
        raise
    return _Job(cell=cell, lock=lock, process=process, log=log, started=time.time())


def _finish(plan: Plan, job: _Job, result: WorkerResult, *, lost: bool) -> str:
    job.log.close()
    code = job.process.returncode
    cell = job.cell
    minutes = (time.time() - job.started) / 60
    if code == 0 and is_finished(plan, cell):
        failure_path(plan, cell).unlink(missing_ok=True)
        job.lock.release()
        result.trained.append(cell.name)
        summary = json.loads((plan.run_folder(cell) / SUMMARY).read_text())
        auc = summary["final"].get("auc")
        return f"cell {cell.index} {cell.name}: finished in {minutes:.1f} min (final AUC {auc})"
    reason = "its lock was broken as stale by another worker" if lost else f"exit code {code}"
    _record_failure(plan, job, reason=reason)
    job.lock.release()
    result.failed.append(cell.name)
    return f"cell {cell.index} {cell.name}: FAILED ({reason}); log: {log_path(plan, cell)}"


def _record_failure(plan: Plan, job: _Job, *, reason: str) -> None:
    write_json_atomic(
        failure_path(plan, job.cell),
        {
            "cell": job.cell.index,
            "name": job.cell.name,
            "reason": reason,
            "returncode": job.process.returncode,
            "host": socket.gethostname(),
            "time": time.time(),
            "log": str(log_path(plan, job.cell).relative_to(plan.folder)),
        },
    )


def _wait(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
