"""Convergence plot: evaluation AUC against training step, one line per init with a band over seeds."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .figures import new_figure, save_png


def plot_convergence(
    curves: dict[str, list[list[dict]]], path: str | Path, *, thresholds: list[float] = (), title: str = ""
) -> Path:
    """``curves[init]`` holds one metrics.jsonl record list per seed; draws mean AUC and its min-max band.

    Seeds share evaluation steps (same ``--eval-every``); steps missing in a seed are ignored for that seed.
    """
    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for init, seeds in curves.items():
        steps = sorted({r["step"] for records in seeds for r in records})
        by_step = [
            [
                np.nan if r.get("auc") is None else r["auc"]
                for records in seeds
                for r in records
                if r["step"] == s
            ]
            for s in steps
        ]  # an undefined AUC (null in metrics.jsonl) is a gap, not a crash
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.array([np.nanmean(v) for v in by_step])
        line = ax.plot(steps, mean, label=f"{init} (n={len(seeds)})", linewidth=1.8)[0]
        if len(seeds) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                low, high = [np.nanmin(v) for v in by_step], [np.nanmax(v) for v in by_step]
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    for threshold in thresholds:
        ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")  # evaluations are log-spaced early, where inits differ
    evaluated = sorted({r["step"] for seeds in curves.values() for records in seeds for r in records})
    ax.set_xticks(evaluated, [str(s) for s in evaluated], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("training step (log scale; ticks at the evaluations)")
    ax.set_ylabel("eval AUC")
    ax.set_title(title or "Convergence by initialization (band: min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_png(fig, path, dpi=120)
