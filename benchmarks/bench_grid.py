"""Wall time of a planned grid: one worker running its cells one after another vs ``--jobs J`` at once.

Plans the same grid into fresh folders and runs ``transfusion experiment run`` on each, alternating the two
modes for ``--rounds`` rounds (the machine's load drifts; alternating spreads it over both). Prints and
writes (``--out``) every round's wall time, the load average around it, and the mean ± std per mode.
CPU default: the real ImageNet MobileNet-V1 0.25 on RetinaMNIST at 28 px, 4 inits x 3 seeds = 12 cells
(random init x 12 seeds on synthetic fundus images when ../shared/data is absent). Threads per cell follow
the worker's rule (OMP_NUM_THREADS, or all cores, shared among the jobs).

    python benchmarks/bench_grid.py --rounds 2 --jobs 2 --out /tmp/bench_grid
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def grid_arguments(args: argparse.Namespace) -> list[str]:
    weights, retina = DATA / "mobilenetv1_025_imagenet.safetensors", DATA / "retinamnist.npz"
    real = weights.is_file() and retina.is_file()
    grid = ["--model", "mobilenetv1_025", "--img-size", "28", "--batch-size", "32", "--log-with", "none"]
    grid += ["--max-steps", str(args.steps), "--eval-every", str(args.steps // 2), "--no-progress"]
    if real:
        inits = ["--inits", "random,pretrained,meanvar,transfusion-1", "--seeds", str(args.seeds)]
        return [*grid, *inits, "--dataset", f"npz:{retina}", "--source", str(weights)]
    return [
        *grid,
        "--inits",
        "random",
        "--seeds",
        str(4 * args.seeds),
        "--dataset",
        "synthetic:fundus:size=28",
    ]


def transfusion(*argv: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "timm_transfusion.cli", *argv], check=True, stdout=subprocess.DEVNULL
    )


def timed_run(folder: Path, grid: list[str], jobs: int) -> dict:
    transfusion("experiment", "plan", *grid, "--output", str(folder))
    load_before, start = os.getloadavg()[0], time.perf_counter()
    transfusion("experiment", "run", str(folder), "--jobs", str(jobs), "--no-progress")
    wall = time.perf_counter() - start
    return {"jobs": jobs, "wall_s": wall, "load_before": load_before, "load_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="cells at once in the parallel mode")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per init (4 inits)")
    parser.add_argument("--steps", type=int, default=60, help="training steps per cell")
    parser.add_argument("--out", type=Path, required=True, help="folder for the grids and bench_grid.json")
    args = parser.parse_args(argv)
    grid = grid_arguments(args)
    rounds = []
    for round_index in range(args.rounds):
        for jobs in (1, args.jobs):
            record = timed_run(args.out / f"round{round_index}-jobs{jobs}", grid, jobs)
            rounds.append({"round": round_index, **record})
            print(json.dumps(rounds[-1]), flush=True)
    summary = {}
    for jobs in (1, args.jobs):
        walls = [r["wall_s"] for r in rounds if r["jobs"] == jobs]
        spread = statistics.stdev(walls) if len(walls) > 1 else float("nan")
        summary[f"jobs{jobs}"] = {"mean_s": statistics.mean(walls), "std_s": spread, "n": len(walls)}
        print(f"--jobs {jobs}: {statistics.mean(walls):.0f} ± {spread:.0f} s over {len(walls)} rounds")
    cells = 4 * args.seeds
    payload = {"grid": grid, "cells": cells, "cpus": os.cpu_count(), "rounds": rounds, "summary": summary}
    (args.out / "bench_grid.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
