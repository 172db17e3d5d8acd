"""The weight-scale and filter analyses for the experiment report: intervals, tables and files.

The numbers come from ``init.scales`` (per-tensor weight std of the source and of each init) and
``similarity.gabor`` (Gabor-likeness of first-layer filters); this module adds their uncertainty with the
report's own statistics (``train.stats``) and writes them next to ``results.md``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..files import write_text_atomic
from ..init.scales import TensorScale, log_ratio_summary, scale_table, scales_to_dict
from ..similarity.gabor import GaborScores
from .stats import RESAMPLES, Interval, bootstrap_indices, percentile_interval, t_interval

GaborByInit = Mapping[str, Mapping[str, GaborScores]]  # init -> "before" / "after" -> scores


def gabor_interval(scores: GaborScores, *, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Mean Gabor score of the filters with a percentile bootstrap interval over the filters."""
    values = np.asarray(scores.scores)
    replicates = values[bootstrap_indices(values.size, resamples=resamples, seed=seed)].mean(axis=1)
    return percentile_interval(float(values.mean()), replicates, method="bootstrap over filters")


def gabor_difference(
    a: GaborScores, b: GaborScores, *, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Mean score of ``a`` minus that of ``b`` (e.g. pretrained vs random after fine-tuning), each set's
    filters resampled on its own (they are different filters)."""
    values_a, values_b = np.asarray(a.scores), np.asarray(b.scores)
    replicates = values_a[bootstrap_indices(values_a.size, resamples=resamples, seed=seed)].mean(
        axis=1
    ) - values_b[bootstrap_indices(values_b.size, resamples=resamples, seed=seed + 1)].mean(axis=1)
    estimate = float(values_a.mean() - values_b.mean())
    return percentile_interval(estimate, replicates, method="bootstrap over filters")


def gabor_above_null(scores: GaborScores, *, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Mean score minus the null's mean (noise of the same shape scores ``null_mean``), over the filters."""
    interval = gabor_interval(scores, resamples=resamples, seed=seed)
    shift = scores.null_mean
    return Interval(
        interval.estimate - shift,
        interval.low - shift,
        interval.high - shift,
        interval.level,
        interval.method,
    )


def gabor_table(scores: GaborByInit) -> list[str]:
    """Markdown lines: per init the mean Gabor score before and after fine-tuning with 95 % intervals over
    filters, the share of filters above the null's 95th percentile, and the null's mean."""
    lines = [
        "| init | Gabor score before | after | above null q95 (before / after) | null mean (q95) |",
        "|---|---:|---:|---:|---:|",
    ]
    for init, by_time in scores.items():
        before, after = by_time["before"], by_time["after"]
        lines.append(
            f"| {init} | {gabor_interval(before).format()} | {gabor_interval(after).format()} | "
            f"{before.above_null:.0%} / {after.above_null:.0%} | {after.null_mean:.3f} ({after.null_q95:.3f}) |"
        )
    return lines


def write_gabor(folder: str | Path, scores: GaborByInit, *, name: str = "gabor") -> dict[str, Path]:
    """``<name>.json`` (every filter's score, the null, the intervals) and ``<name>.csv`` (one row per init
    and time)."""
    folder = Path(folder)
    rows = [
        {
            "init": init,
            "when": when,
            "filters": len(result.scores),
            "mean": result.mean,
            **{
                f"interval_{k}": v
                for k, v in gabor_interval(result).to_dict().items()
                if k in ("low", "high")
            },
            "above_null": result.above_null,
            "null_mean": result.null_mean,
            "null_q95": result.null_q95,
        }
        for init, by_time in scores.items()
        for when, result in by_time.items()
    ]
    payload = {init: {when: asdict(r) for when, r in by_time.items()} for init, by_time in scores.items()}
    paths = {"json": folder / f"{name}.json", "csv": folder / f"{name}.csv"}
    write_text_atomic(paths["json"], json.dumps({"summary": rows, "scores": payload}, indent=2) + "\n")
    write_text_atomic(paths["csv"], _csv(rows))
    return paths


def scale_intervals(scales: Sequence[TensorScale], init: str, reference: str = "pretrained") -> dict:
    """For ``init`` against ``reference``: the mean log2 std ratio over tensors (0 = same scale on average)
    and the mean |log2 ratio| (0 = every tensor at the reference's scale), each with a t interval over the
    tensors, plus ``log_ratio_summary``'s figures."""
    summary = log_ratio_summary(scales, init, reference)
    logs = summary.pop("log2_ratios")
    return {
        **summary,
        "mean_log2_ratio_interval": _interval_dict(t_interval(logs)),
        "mean_abs_log2_ratio_interval": _interval_dict(t_interval([abs(v) for v in logs])),
    }


def _interval_dict(interval: Interval | None) -> dict | None:
    return None if interval is None else interval.to_dict()


def write_weight_scales(
    folder: str | Path, scales: Sequence[TensorScale], *, name: str = "weight_scale", title: str = ""
) -> dict[str, Path]:
    """``<name>.json`` (every tensor, and per init its ratio summary), ``<name>.csv``, ``<name>.md`` (the
    table) and ``<name>.png`` (the plot)."""
    from ..viz.weight_scale import plot_weight_scales

    folder = Path(folder)
    inits = [init for init in scales[0].std if init != "pretrained"]
    paths = {kind: folder / f"{name}.{kind}" for kind in ("json", "csv", "md", "png")}
    payload = {
        "tensors": scales_to_dict(scales),
        "summaries": {init: scale_intervals(scales, init) for init in scales[0].std if init in inits},
    }
    write_text_atomic(paths["json"], json.dumps(payload, indent=2) + "\n")
    rows = [
        {
            "tensor": s.key,
            "shape": "x".join(map(str, s.shape)),
            "group": s.group,
            **{f"std_{k}": v for k, v in s.std.items()},
        }
        for s in scales
    ]
    write_text_atomic(paths["csv"], _csv(rows))
    write_text_atomic(paths["md"], "\n".join(scale_table(scales)) + "\n")
    plot_weight_scales(scales, paths["png"], title=title)
    return paths


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
