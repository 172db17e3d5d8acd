"""The slim-hybrid comparison: full transfer vs random vs slim-with-reused-lower-blocks, from experiment folders.

Reads the run folders of one or more `transfusion experiment` outputs (e.g. one for mobilenetv1_025 with
random,pretrained and one for mobilenetv1_025_slim3_w50 with random,transfusion-3), and prints per arm
(model × init): final AUC mean ± sd over seeds with a 95 % t interval, steps to each AUC threshold, and the
model's parameters and GMACs at the run's image size; paired-by-seed differences against a reference arm;
and draws AUC vs step (mean over seeds, min–max band) for every arm.

Run: python benchmarks/slim_comparison.py runs/slim-exp2/full runs/slim-exp2/slim --reference mobilenetv1_025:pretrained \
        --plot runs/slim-exp2/convergence.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import timm
from matplotlib.figure import Figure
from scipy import stats

import timm_transfusion  # noqa: F401  (registers the plugin's models)
from timm_transfusion.files import atomic_path, read_jsonl
from timm_transfusion.models.costs import count_macs, count_parameters


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and the 95 % t interval over seeds."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def load_arms(folders: list[Path]) -> dict[str, dict[int, dict]]:
    """{"model:init": {seed: {"summary": ..., "metrics": [...]}}} of every finished run (summary.json present)."""
    arms: dict[str, dict[int, dict]] = defaultdict(dict)
    for folder in folders:
        for summary_path in sorted(folder.glob("runs/*/summary.json")):
            summary = json.loads(summary_path.read_text())
            metrics = list(read_jsonl(summary_path.parent / "metrics.jsonl"))
            arms[f"{summary['model']}:{summary['init']}"][summary["seed"]] = {
                "summary": summary,
                "metrics": metrics,
            }
    return dict(arms)


def table(arms: dict[str, dict[int, dict]], reference: str | None) -> str:
    first = next(iter(next(iter(arms.values())).values()))["summary"]
    thresholds = sorted(first["steps_to_threshold"], key=float)
    header = "| model | init | params | GMACs | seeds | final AUC mean ± sd [95 % t] | per seed |"
    header += "".join(f" steps to {t} (reached) |" for t in thresholds)
    rows = [header, "|" + " --- |" * (header.count("|") - 1)]
    for arm, runs in arms.items():
        model, init = arm.split(":", 1)
        aucs = [runs[s]["summary"]["final"]["auc"] for s in sorted(runs)]
        mean, low, high = t_interval(aucs)
        size = runs[min(runs)]["summary"]["img_size"]
        classes = runs[min(runs)]["summary"]["num_classes"]
        params = count_parameters(timm.create_model(model, num_classes=classes))
        gmacs = count_macs(model, img_size=size, num_classes=classes) / 1e9
        row = (
            f"| `{model}` | {init} | {params:,} | {gmacs:.4f} | {len(aucs)} | "
            f"{mean:.3f} ± {statistics.stdev(aucs) if len(aucs) > 1 else float('nan'):.3f} [{low:.3f}, {high:.3f}] | "
            + ", ".join(f"{a:.3f}" for a in aucs)
            + " |"
        )
        for t in thresholds:
            reached = [runs[s]["summary"]["steps_to_threshold"][t] for s in sorted(runs)]
            steps = [r for r in reached if r is not None]
            shown = "–"
            if steps:
                shown = f"{statistics.fmean(steps):.0f}" + (
                    f" ± {statistics.stdev(steps):.0f}" if len(steps) > 1 else ""
                )
            row += f" {shown} ({len(steps)}/{len(reached)}) |"
        rows.append(row)
    if reference in arms:
        rows += ["", f"Paired by seed, final AUC minus `{reference}` (mean [95 % t interval]):", ""]
        base = arms[reference]
        for arm, runs in arms.items():
            seeds = sorted(set(runs) & set(base))
            if arm == reference or not seeds:
                continue
            diffs = [runs[s]["summary"]["final"]["auc"] - base[s]["summary"]["final"]["auc"] for s in seeds]
            mean, low, high = t_interval(diffs)
            rows.append(f"- `{arm}`: {mean:+.3f} [{low:+.3f}, {high:+.3f}] over {len(seeds)} seeds")
    return "\n".join(rows)


def plot(arms: dict[str, dict[int, dict]], path: Path) -> None:
    figure = Figure(figsize=(7, 4.2))
    axes = figure.add_subplot()
    for arm, runs in arms.items():
        curves = [
            {m["step"]: m["auc"] for m in run["metrics"] if m.get("auc") is not None} for run in runs.values()
        ]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[s] for s in steps] for c in curves])
        axes.plot(steps, values.mean(axis=0), label=f"{arm} ({len(curves)} seeds)")
        axes.fill_between(steps, values.min(axis=0), values.max(axis=0), alpha=0.2)
    axes.set(xlabel="training step", ylabel="validation AUC", title="Slim hybrid vs full transfer vs random")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path, help="experiment output folders")
    parser.add_argument("--reference", help="arm MODEL:INIT the others are compared with, paired by seed")
    parser.add_argument("--plot", type=Path, help="write AUC vs step of every arm to this PNG")
    args = parser.parse_args()
    arms = load_arms(args.folders)
    if not arms:
        parser.error(f"no finished runs (runs/*/summary.json) under {', '.join(map(str, args.folders))}")
    print(table(arms, args.reference))
    if args.plot:
        plot(arms, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
