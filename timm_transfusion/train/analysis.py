"""The statistics of a finished grid: per-run curves, per-init summaries over seeds, paired contrasts.

Each run contributes its evaluation curve (``metrics.jsonl``) and, when it kept them, the per-image predictions
of every evaluation (``eval_predictions/step_*.npz``). One set of bootstrap resamples of the eval images is
shared by every run of a grid, so a contrast between inits is paired over images as well as over seeds. Runs
without predictions still get seed-level intervals (the report says which).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import read_jsonl
from .convergence import crossing_step, log_step_area, log_step_areas, threshold_key
from .errors import AnalysisError
from .run_folder import read_eval_predictions
from .stats import Contrast, SeedSummary, auc_replicates, bootstrap_indices, paired_contrast, summarize_seeds

METRICS = ("final_auc", "area")  # statistics with image-bootstrap replicates; steps@T are seed-level only


@dataclass
class RunData:
    """One finished run: its summary, its test-AUC curve (E,) and, if predictions were kept, replicates (R, E)."""

    folder: Path
    summary: dict
    steps: np.ndarray
    auc: np.ndarray
    replicates: np.ndarray | None = None

    def value(self, metric: str) -> float | None:
        """``final_auc``, ``area`` (normalised area under AUC vs log step) or ``steps@T`` (interpolated)."""
        if metric == "final_auc":
            final = self.auc[-1] if self.auc.size else math.nan
            return float(final) if math.isfinite(final) else None
        if metric == "area":
            return log_step_area(self.steps.tolist(), self.auc.tolist()) if self.steps.size > 1 else None
        if metric.startswith("steps@"):
            return crossing_step(self.steps.tolist(), self.auc.tolist(), float(metric.removeprefix("steps@")))
        raise AnalysisError(f"unknown metric {metric!r}; choose final_auc, area or steps@THRESHOLD")

    def value_replicates(self, metric: str) -> np.ndarray | None:
        """(R,) bootstrap replicates of ``final_auc`` or ``area``; None without predictions."""
        if self.replicates is None or metric not in METRICS:
            return None
        if metric == "final_auc":
            return self.replicates[:, -1]
        return log_step_areas(self.steps.tolist(), self.replicates) if self.steps.size > 1 else None

    @property
    def select_auc(self) -> float | None:
        """AUC on the selection split (val) at the end of training, if the run measured it."""
        value = (self.summary.get("select") or {}).get("auc")
        return float(value) if value is not None and math.isfinite(value) else None


def _float_or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def load_run(folder: Path, *, indices: np.ndarray | None = None) -> RunData:
    """Read a finished run; with ``indices`` (R, N) and predictions for every evaluation, its replicates."""
    import json

    summary = json.loads((folder / "summary.json").read_text())
    records = read_jsonl(folder / "metrics.jsonl")
    steps = np.array([r["step"] for r in records], dtype=np.float64)
    auc = np.array([_float_or_nan(r.get("auc")) for r in records])
    run = RunData(folder, summary, steps, auc)
    if indices is None:
        return run
    predictions = read_eval_predictions(folder, [int(s) for s in steps])
    if predictions is None or predictions[0]["labels"].shape[0] != indices.shape[1]:
        return run
    multilabel = bool(summary.get("multilabel"))
    run.replicates = np.stack(
        [auc_replicates(p["scores"], p["labels"], indices, multilabel=multilabel) for p in predictions],
        axis=1,
    )
    return run


def shared_indices(num_images: int, *, resamples: int, seed: int = 0) -> np.ndarray:
    """The bootstrap resamples every run of a grid uses (the same images on every side of a contrast)."""
    return bootstrap_indices(num_images, resamples=resamples, seed=seed)


@dataclass
class InitRuns:
    """The runs of one init at its chosen learning rate, by seed."""

    init: str
    lr: float
    runs: dict[int, RunData]

    def values(self, metric: str) -> dict[int, float | None]:
        return {seed: run.value(metric) for seed, run in self.runs.items()}

    def summary(self, metric: str) -> SeedSummary:
        return summarize_seeds(self.values(metric))


def contrast(groups: Mapping[str, InitRuns], weights: Mapping[str, float], metric: str) -> Contrast | None:
    """``paired_contrast`` of ``metric`` over the seeds every weighted init has; with image replicates when
    every one of those runs kept its predictions. None when an init is absent or no seed is complete."""
    if any(init not in groups for init in weights):
        return None
    values = {init: groups[init].values(metric) for init in weights}
    common = sorted(set.intersection(*(set(groups[init].runs) for init in weights)))
    per_seed = []
    for seed in common:
        reps = [groups[init].runs[seed].value_replicates(metric) for init in weights]
        if any(r is None for r in reps):
            per_seed = None
            break
        per_seed.append(sum(w * r for w, r in zip(weights.values(), reps, strict=True)))
    image_replicates = np.mean(per_seed, axis=0) if per_seed else None
    return paired_contrast(values, weights, image_replicates=image_replicates)


def threshold_metric(threshold: float) -> str:
    return f"steps@{threshold_key(threshold)}"
