"""Convergence: the evaluation schedule, the history of a run, and the summaries of its AUC-vs-step curve.

A single noisy crossing decides "first evaluated step above the threshold"; the report uses two summaries that
hinge less on one evaluation: the step where the curve crosses the threshold, interpolated between the two
evaluations around the crossing, and the normalised area under AUC against log(step) (threshold-free; 1.0
would be an AUC of 1 from the first evaluation on). Evaluations are dense early (log-spaced) because
that is where inits differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from .errors import AnalysisError


def evaluation_steps(max_steps: int, *, every: int, log_start: int = 10) -> list[int]:
    """Steps to evaluate at: ``log_start``, 2·``log_start``, 4·… (doubling; 0 turns it off), every ``every``-th
    step, and ``max_steps``; sorted, each once. E.g. (300, every=100) -> [10, 20, 40, 80, 100, 160, 200, 300].
    """
    steps = set(range(every, max_steps + 1, every)) | ({max_steps} if max_steps > 0 else set())
    step = log_start
    while 0 < step < max_steps:
        steps.add(step)
        step *= 2
    return sorted(steps)


def crossing_step(steps: Sequence[float], values: Sequence[float | None], threshold: float) -> float | None:
    """The first step where the curve reaches ``threshold``, interpolated linearly between the evaluation
    below it and the first one at or above it (the first evaluation itself if that is already above).

    ``steps`` (E,) increasing; ``values`` (E,) AUCs (None/NaN evaluations are skipped). None if never reached.
    """
    previous: tuple[float, float] | None = None
    for step, value in zip(steps, values, strict=True):
        if value is None or not math.isfinite(value):
            continue
        if value >= threshold:
            if previous is None:
                return float(step)
            (s0, v0) = previous
            return float(s0 + (threshold - v0) / (value - v0) * (step - s0))
        previous = (step, value)
    return None


def log_step_areas(steps: Sequence[float], curves: np.ndarray) -> np.ndarray:
    """Area under AUC against log(step) from the first to the last evaluation, divided by that log-range
    (trapezoids: a mean AUC where each doubling of the steps weighs the same).

    ``steps`` (E,) positive, increasing; ``curves`` (R, E) AUCs, e.g. one row per bootstrap resample.
    Returns (R,); NaN where a row has an undefined evaluation.
    """
    x = np.log(np.asarray(steps, dtype=np.float64))
    if x.size < 2 or np.any(np.diff(x) <= 0):
        raise AnalysisError(f"need at least two positive, increasing evaluation steps, got {list(steps)}")
    y = np.asarray(curves, dtype=np.float64)
    return np.sum((y[:, 1:] + y[:, :-1]) / 2 * np.diff(x), axis=1) / (x[-1] - x[0])


def log_step_area(steps: Sequence[float], values: Sequence[float | None]) -> float | None:
    """``log_step_areas`` of one curve; None when it has fewer than two evaluations or an undefined one (an
    area with holes would not compare with a complete one)."""
    if len(steps) < 2 or any(v is None or not math.isfinite(v) for v in values):
        return None
    return float(log_step_areas(steps, np.asarray(values, dtype=np.float64)[None])[0])


def best_auc(records: Sequence[dict], *, key: str = "auc") -> float | None:
    """The highest defined ``key`` over the evaluations (undefined ones, None or NaN, are skipped; the
    builtin ``max`` with a NaN depends on where the NaN sits)."""
    values = [r[key] for r in records if r.get(key) is not None and math.isfinite(r[key])]
    return max(values) if values else None


def threshold_key(threshold: float) -> str:
    """The JSON key of a threshold: ``0.7`` -> ``"0.7"``."""
    return format(threshold, "g")


def steps_to_threshold(
    records: Sequence[dict], thresholds: Iterable[float], *, key: str = "auc"
) -> dict[str, int | None]:
    """First evaluated ``step`` whose ``key`` is >= each threshold (None if never reached).

    ``records`` are metrics.jsonl lines in step order, e.g. ``[{"step": 100, "auc": 0.68}, ...]``.
    """
    result: dict[str, int | None] = {}
    for threshold in thresholds:
        reached = (r["step"] for r in records if r.get(key) is not None and r[key] >= threshold)
        result[threshold_key(threshold)] = next(reached, None)
    return result


class TrainHistory:
    """Evaluation records plus progress counters; checkpointed with the run (``state_dict``/``load_state_dict``)."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.step = 0
        self.elapsed_s = 0.0
        self.running_loss = 0.0  # training loss summed since the last evaluation, and its batch count
        self.running_count = 0

    def state_dict(self) -> dict:
        return {
            "records": list(self.records),
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "running_loss": self.running_loss,
            "running_count": self.running_count,
        }

    def load_state_dict(self, state: dict) -> None:
        self.records, self.step, self.elapsed_s = (
            list(state["records"]),
            int(state["step"]),
            state["elapsed_s"],
        )
        self.running_loss, self.running_count = state["running_loss"], int(state["running_count"])
