"""One cell of a planned experiment, in its own process: ``python -m timm_transfusion.train.cell EXP I``.

Started by a worker (``transfusion experiment run``), directly or under a launcher (``accelerate launch ...
-m timm_transfusion.train.cell EXP I``, torchrun). Each training gets a fresh process, so accelerate's
per-process state (precision, process group) is never reused across runs. ``--exec -- CMD`` is the guard a
worker puts in front of a launcher: it makes CMD die with the worker, then becomes CMD.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # Linux prctl option: signal this process when its parent exits


def die_with_parent() -> None:
    """Under a worker (TRANSFUSION_WORKER_PID set): get SIGKILL when the worker dies, so a killed worker
    never leaves an orphan training a cell whose lock now looks stale. Linux only; elsewhere a no-op."""
    worker = os.environ.get("TRANSFUSION_WORKER_PID")
    if worker is None and os.environ.get("TRANSFUSION_DIE_WITH_PARENT") != "1":
        return
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if worker is not None and os.getppid() != int(worker):  # the worker died before prctl took effect
        os._exit(1)


def pin_cpus() -> None:
    """The CPUs the worker gave this job (TRANSFUSION_CPUS=0,1), so concurrent jobs do not share cores."""
    cpus = os.environ.get("TRANSFUSION_CPUS")
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


def exec_guarded(command: list[str]) -> None:
    """Become ``command`` (the launcher); it and the processes it starts die with the worker."""
    die_with_parent()
    os.environ.pop("TRANSFUSION_WORKER_PID", None)
    os.environ["TRANSFUSION_DIE_WITH_PARENT"] = "1"
    os.execvp(command[0], command)


def run_cell(folder: str, key: str) -> int:
    """Train the cell ``key`` (index or name) of the plan in ``folder``; 2 for a user mistake."""
    from accelerate import PartialState

    from ..errors import TransfusionError
    from .grid import load_plan
    from .loop import train

    try:
        plan = load_plan(folder)
        train(plan.train_config(plan.cell(key)))
    except TransfusionError as err:
        print(f"transfusion cell: error: {err}", file=sys.stderr)
        return 2
    finally:
        PartialState().destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--exec"]:
        exec_guarded(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    if len(argv) != 2:
        print("usage: python -m timm_transfusion.train.cell EXP CELL", file=sys.stderr)
        return 2
    die_with_parent()
    pin_cpus()
    return run_cell(*argv)


if __name__ == "__main__":
    sys.exit(main())
