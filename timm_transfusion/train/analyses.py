"""The weight-scale and filter analyses for the experiment report: intervals, tables and files.

The numbers come from ``init.scales`` (per-tensor weight std of the source and of each init) and
``similarity.gabor`` (Gabor-likeness of first-layer filters); this module adds their uncertainty with the
report's own statistics (``train.stats``) and writes them next to ``results.md``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..files import write_text_atomic
from ..init.scales import TensorScale, log_ratio_summary, scale_table, scales_to_dict
from ..similarity.gabor import GaborScores
from .errors import AnalysisKeyError
from .stats import (
    RESAMPLES,
    Contrast,
    Interval,
    bootstrap_indices,
    paired_contrast,
    percentile_interval,
    t_interval,
)

GaborByInit = Mapping[str, Mapping[str, GaborScores]]  # one seed: init -> "before" / "after" -> scores
GaborBySeed = Mapping[str, Mapping[int, Mapping[str, GaborScores]]]  # init -> training seed -> when -> scores
WHEN = ("before", "after")


def gabor_replicates(scores: GaborScores, *, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples,) mean score of each bootstrap resample of the filters."""
    values = np.asarray(scores.scores)
    return values[bootstrap_indices(values.size, resamples=resamples, seed=seed)].mean(axis=1)


def gabor_interval(scores: GaborScores, *, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Mean Gabor score of the filters with a percentile bootstrap interval over the filters."""
    replicates = gabor_replicates(scores, resamples=resamples, seed=seed)
    return percentile_interval(float(np.mean(scores.scores)), replicates, method="bootstrap over filters")


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


def _stream(seed: int, side: int, run_seed: int) -> int:
    """An independent bootstrap stream for each (side of a contrast, training seed): different runs'
    filters are different filters and are resampled apart."""
    return int(np.random.SeedSequence([seed, side, run_seed]).generate_state(1)[0])


def gabor_seed_contrast(
    scores: Mapping[str, Mapping[int, GaborScores]],
    weights: Mapping[str, float],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Contrast | None:
    """Σ weight·(mean filter score) over the training seeds every weighted side has, as ``stats`` does
    for AUC: per seed the weighted sum of each side's mean score (paired by seed), a t interval over the
    seeds whose standard error also carries the bootstrap variance over each run's filters
    (``paired_contrast`` with the filter replicates averaged over seeds).

    ``scores[side][run_seed]``: e.g. ``{"pretrained": …, "random": …}`` after fine-tuning with weights
    ``{"pretrained": 1, "random": -1}`` (the finding), or one side with weight 1 (an init's mean over
    seeds). One seed gives the filter bootstrap alone, which ``findings.judge`` reads as inconclusive.
    None when no seed has every side.
    """
    missing = sorted(set(weights) - set(scores))
    if missing:
        raise AnalysisKeyError(f"no Gabor scores for {missing[0]!r}; scored: {', '.join(scores)}")
    common = sorted(set.intersection(*(set(scores[side]) for side in weights)))
    if not common:
        return None
    values = {side: {s: float(np.mean(scores[side][s].scores)) for s in common} for side in weights}
    replicates = np.mean(
        [
            sum(
                weight * gabor_replicates(scores[side][s], resamples=resamples, seed=_stream(seed, index, s))
                for index, (side, weight) in enumerate(weights.items())
            )
            for s in common
        ],
        axis=0,
    )
    return paired_contrast(values, weights, image_replicates=replicates, resampled="filters")


def _format(measured: Contrast | None) -> str:
    if measured is None:
        return "-"
    interval = measured.interval
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return f"{interval.estimate:.3f} [no interval]"
    return interval.format()


def _init_when(by_seed: Mapping[int, Mapping[str, GaborScores]], when: str) -> dict[int, GaborScores]:
    return {s: by_time[when] for s, by_time in by_seed.items()}


def _distinct(runs: Mapping[int, GaborScores]) -> dict[int, GaborScores]:
    """The runs whose filters differ: every seed of ``pretrained`` starts from the same source filters,
    which are one set of filters (resampled once), not one per seed."""
    kept: dict[int, GaborScores] = {}
    for s, result in runs.items():
        if all(result.scores != other.scores for other in kept.values()):
            kept[s] = result
    return kept


def gabor_init_summary(runs: Mapping[int, GaborScores], *, resamples: int = RESAMPLES) -> Contrast:
    """One init's mean score over its seeds at one time (``runs[seed]``, e.g. every seed after
    fine-tuning) with its interval across seeds (``gabor_seed_contrast``); seeds with identical filters
    count once."""
    return gabor_seed_contrast({"init": _distinct(runs)}, {"init": 1.0}, resamples=resamples)


def gabor_table(scores: GaborBySeed) -> list[str]:
    """Markdown lines: per init the mean Gabor score over seeds before and after fine-tuning with its 95 %
    interval across seeds, each seed's score after with its interval over that seed's filters, the share
    of filters above the null's 95th percentile (mean over seeds) and the null's mean."""
    lines = [
        "| init | seeds | Gabor score before [95 % across seeds] | after [95 % across seeds] | "
        "after, per seed [95 % over its filters] | above null q95 (before / after) | null mean (q95) |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for init, by_seed in scores.items():
        across = {when: gabor_init_summary(_init_when(by_seed, when)) for when in WHEN}
        per_seed = "; ".join(
            f"{s}: {gabor_interval(by_time['after']).format()}" for s, by_time in by_seed.items()
        )
        above = {
            when: float(np.mean([by_time[when].above_null for by_time in by_seed.values()])) for when in WHEN
        }
        null = next(iter(by_seed.values()))["after"]
        lines.append(
            f"| {init} | {len(by_seed)} | {_format(across['before'])} | {_format(across['after'])} | "
            f"{per_seed} | {above['before']:.0%} / {above['after']:.0%} | "
            f"{null.null_mean:.3f} ({null.null_q95:.3f}) |"
        )
    return lines


def _bounds(interval: Interval) -> dict[str, float | None]:
    return {
        f"interval_{k}": (v if math.isfinite(v) else None)
        for k, v in (("low", interval.low), ("high", interval.high))
    }


def gabor_rows(scores: GaborBySeed) -> list[dict]:
    """One row per init, time and seed (its interval over its filters), then one per init and time with
    ``seed="all"`` (the mean over seeds and its interval across seeds)."""
    rows = []
    for init, by_seed in scores.items():
        for when in WHEN:
            runs = _init_when(by_seed, when)
            for s, result in runs.items():
                rows.append(
                    {
                        "init": init,
                        "when": when,
                        "seed": s,
                        "filters": len(result.scores),
                        "mean": result.mean,
                        **_bounds(gabor_interval(result)),
                        "above_null": result.above_null,
                        "null_mean": result.null_mean,
                        "null_q95": result.null_q95,
                    }
                )
            across = gabor_init_summary(runs)
            rows.append(
                {
                    "init": init,
                    "when": when,
                    "seed": "all",
                    "filters": sum(len(r.scores) for r in _distinct(runs).values()),
                    "mean": across.interval.estimate,
                    **_bounds(across.interval),
                    "above_null": float(np.mean([r.above_null for r in runs.values()])),
                    "null_mean": next(iter(runs.values())).null_mean,
                    "null_q95": next(iter(runs.values())).null_q95,
                }
            )
    return rows


def write_gabor(
    folder: str | Path,
    scores: GaborBySeed,
    *,
    name: str = "gabor",
    difference: Contrast | None = None,
) -> dict[str, Path]:
    """``<name>.json`` (every seed's filter scores, the null, the per-seed and across-seed intervals, and
    ``difference``: the finding's paired contrast) and ``<name>.csv`` (``gabor_rows``)."""
    folder = Path(folder)
    rows = gabor_rows(scores)
    payload = {
        init: {str(s): {when: asdict(r) for when, r in by_time.items()} for s, by_time in by_seed.items()}
        for init, by_seed in scores.items()
    }
    document = {
        "summary": rows,
        "difference": None if difference is None else _finite_dict(difference.to_dict()),
        "scores": payload,
    }
    paths = {"json": folder / f"{name}.json", "csv": folder / f"{name}.csv"}
    write_text_atomic(paths["json"], json.dumps(document, indent=2, allow_nan=False) + "\n")
    write_text_atomic(paths["csv"], _csv(rows))
    return paths


def _finite_dict(values: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


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
