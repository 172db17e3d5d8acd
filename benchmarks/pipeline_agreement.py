"""Do the two input pipelines train equally good models? Seeds x {device, pil}, paired by seed and image.

Each run is ``transfusion train`` in its own process (test split evaluated, predictions saved); a finished run
is kept, so re-running the command continues. The report is the test AUC of each pipeline (mean over seeds
with a bootstrap interval over test images), and the paired difference device - PIL with the interval of
``train.stats.paired_difference`` (seed variance + image bootstrap). The verdict on "the pipelines are
equivalent" follows ``stats.VERDICT_RULE`` with a margin of 0.02 AUC, the project's equivalence margin.

    python benchmarks/pipeline_agreement.py --out runs/pipeline_agreement        # PneumoniaMNIST, 5 seeds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from timm_transfusion.train.stats import (
    auc_replicates,
    bootstrap_indices,
    paired_difference,
    percentile_interval,
    verdict,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PIPELINES = ("device", "pil")
MARGIN = 0.02


def train_run(folder: Path, pipeline: str, seed: int, args: argparse.Namespace) -> None:
    """One training in its own process; skipped when its summary.json exists."""
    if (folder / "summary.json").is_file():
        return
    command = [sys.executable, "-m", "timm_transfusion.cli", "train", "--model", args.model]
    command += [
        "--dataset",
        args.dataset,
        "--output",
        str(folder),
        "--pipeline",
        pipeline,
        "--seed",
        str(seed),
    ]
    command += ["--img-size", str(args.img_size), "--batch-size", str(args.batch_size)]
    command += ["--max-steps", str(args.steps), "--eval-every", str(args.steps), "--eval-log-start", "0"]
    command += ["--lr", str(args.lr), "--eval-split", "test", "--save-predictions", "--no-progress"]
    command += ["--log-with", "none", "--overwrite", "--init", args.init]
    if args.init_source:
        command += ["--init-source", args.init_source]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, check=True, env=env)


def final_predictions(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of the final evaluation, in image order."""
    with np.load(folder / "eval_predictions.npz") as saved:
        order = np.argsort(saved["index"])
        return saved["scores"][order], saved["labels"][order]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default=f"npz:{DATA / 'pneumoniamnist.npz'}")
    parser.add_argument("--model", default="mobilenetv1_025")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--init", default="random", help="e.g. pretrained (with --init-source)")
    parser.add_argument("--init-source", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/pipeline_agreement"))
    args = parser.parse_args()
    aucs: dict[str, dict[int, float]] = {p: {} for p in PIPELINES}
    predictions: dict[str, dict[int, tuple]] = {p: {} for p in PIPELINES}
    for seed in range(args.seeds):
        for pipeline in PIPELINES:
            folder = args.out / pipeline / f"seed{seed}"
            train_run(folder, pipeline, seed, args)
            predictions[pipeline][seed] = final_predictions(folder)
            aucs[pipeline][seed] = json.loads((folder / "summary.json").read_text())["final"]["auc"]
    labels = predictions["device"][0][1]
    if not all(
        np.array_equal(run_labels, labels) for runs in predictions.values() for _, run_labels in runs.values()
    ):
        raise SystemExit("the runs were evaluated on different test labels; they cannot be paired by image")
    resamples = bootstrap_indices(len(labels), seed=0)
    replicates = {
        p: np.mean([auc_replicates(s, labels, resamples) for s, _ in predictions[p].values()], axis=0)
        for p in PIPELINES
    }
    lines = [
        f"# Input pipelines: device vs PIL ({args.model}, init {args.init}, {args.dataset.split('/')[-1]}, "
        f"{args.img_size} px, {args.steps} steps, lr {args.lr}, {args.seeds} seeds)",
        "",
        "| pipeline | test AUC, mean over seeds [95 % bootstrap over images] | per seed |",
        "|---|---|---|",
    ]
    for p in PIPELINES:
        mean = float(np.mean(list(aucs[p].values())))
        interval = percentile_interval(mean, replicates[p], method="bootstrap over test images")
        per_seed = ", ".join(f"{aucs[p][s]:.3f}" for s in sorted(aucs[p]))
        lines.append(f"| {p} | {interval.format()} | {per_seed} |")
    contrast = paired_difference(
        aucs["device"], aucs["pil"], image_replicates=replicates["device"] - replicates["pil"]
    )
    outcome = verdict(contrast.interval, "equivalent", margin=MARGIN)
    differ = [claim for claim in ("greater", "less") if verdict(contrast.interval, claim) == "supported"]
    lines += [
        "",
        f"Device - PIL, paired by seed and image: **{contrast.interval.format()}** ({contrast.interval.method}).",
        f"A difference between the pipelines: **{'detected (device ' + differ[0] + ')' if differ else 'none detected'}**"
        " (the interval " + ("excludes" if differ else "contains") + " 0).",
        f"Claim 'the pipelines train equally good models' (|difference| < {MARGIN} AUC): **{outcome}**.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "agreement.md").write_text("\n".join(lines) + "\n")
    (args.out / "agreement.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "auc": aucs,
                "difference": contrast.to_dict(),
                "verdict": outcome,
                "difference_detected": bool(differ),
            },
            indent=2,
        )
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
