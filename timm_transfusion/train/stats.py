"""Statistics for experiment reports: bootstrap intervals over eval images, summaries over seeds, paired
contrasts between inits, and the one rule that turns an interval into a verdict.

Two sources of noise make an init's figure uncertain: the training seed (init draw, data order, augmentation)
and the finite eval set. Seeds are summarised by mean ± sd with every per-seed value kept; the eval set by
bootstrap resampling of its images. A comparison between inits is *paired*: the same seeds and the same
resampled images on both sides, so noise they share cancels. Its interval is a t interval over seeds whose
standard error also carries the image-bootstrap variance of the contrast (both noise sources; degrees of freedom
by Welch-Satterthwaite, from seeds - 1 when the seed part dominates towards a normal when the image part does).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from scipy import stats as scipy_stats

from .errors import AnalysisError, AnalysisKeyError

LEVEL = 0.95
RESAMPLES = 1000

Claim = Literal["greater", "less", "equivalent"]
VERDICTS = ("supported", "contradicted", "inconclusive")
VERDICT_RULE = (
    "A claim 'X > b' is *supported* when the whole 95 % interval of X lies above b, *contradicted* when it "
    "lies wholly below b, and *inconclusive* otherwise ('X < b' mirrored). A claim 'X ≈ 0' (equivalence "
    "within a margin m) is *supported* when the interval lies inside (-m, m), *contradicted* when it lies "
    "wholly outside [-m, m], and *inconclusive* otherwise. A statistic that could not be measured, or a "
    "comparison of inits from a single seed (its seed-to-seed variation unmeasured), is inconclusive."
)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at ``level``; ``method`` says how it was made."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL
    method: str = ""

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self, digits: int = 3) -> str:
        """``0.912 [0.884, 0.937]``."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class SeedSummary:
    """Mean and sample sd over the seeds that produced a value; ``values`` keeps every seed (None: undefined)."""

    mean: float | None
    sd: float | None
    values: dict[int, float | None] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """How many seeds produced a value."""
        return sum(v is not None for v in self.values.values())

    def to_dict(self) -> dict:
        return {
            "mean": self.mean,
            "sd": self.sd,
            "n": self.n,
            "values": {str(k): v for k, v in self.values.items()},
        }

    def format(self, digits: int = 3) -> str:
        """``0.912 ± 0.008`` (sd over seeds), ``-`` when no seed produced a value."""
        if self.mean is None:
            return "-"
        return f"{self.mean:.{digits}f}" + ("" if self.sd is None else f" ± {self.sd:.{digits}f}")


def _defined(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def summarize_seeds(values: Mapping[int, float | None]) -> SeedSummary:
    """Mean ± sample sd (ddof=1; None with one seed) over the seeds whose value is defined (not None/NaN)."""
    kept = {seed: (float(v) if _defined(v) else None) for seed, v in values.items()}
    present = np.array([v for v in kept.values() if v is not None])
    mean = float(present.mean()) if present.size else None
    sd = float(present.std(ddof=1)) if present.size > 1 else None
    return SeedSummary(mean, sd, kept)


def bootstrap_indices(n: int, *, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n) image indices drawn with replacement; share them across inits and seeds to pair them."""
    if n < 1:
        raise AnalysisError(f"bootstrap needs at least one eval image, got n={n}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(R, n) how often each image occurs in each resample of ``indices`` (R, m)."""
    rows = indices.shape[0]
    flat = (indices + np.arange(rows)[:, None] * n).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def _weighted_binary_auc(positive: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC under each row of image weights: ``positive``/``scores`` (N,), ``counts`` (R, N).

    Sorting once and weighting makes a resample O(N); ties count one half, as in ``roc_auc_score``.
    Returns (R,), NaN where a resample holds one class only.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores, is_pos, weights = scores[order], positive[order], counts[:, order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # groups of tied scores
    pos = np.add.reduceat(weights * is_pos, starts, axis=1)
    neg = np.add.reduceat(weights * ~is_pos, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def auc_replicates(
    scores: np.ndarray, labels: np.ndarray, indices: np.ndarray, *, multilabel: bool = False
) -> np.ndarray:
    """The AUC of each resample, defined as the project's ``roc_auc`` metric defines it.

    ``scores`` (N, C) probabilities; ``labels`` (N,) class ids or (N, K) multi-hot; ``indices`` (R, N) from
    ``bootstrap_indices`` (a single row ``arange(N)`` gives the plain AUC). Binary (C = 2): the positive
    column; multiclass: one-vs-rest macro mean; multi-label: mean over labels; columns with one class in a
    resample are left out of its mean. Returns (R,) floats (NaN where no column is defined).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise AnalysisError(
            f"scores must be (N, C) with one row per label, got {scores.shape} and {labels.shape}"
        )
    if multilabel:
        onehot = labels.astype(bool)
    else:
        onehot = np.eye(scores.shape[1], dtype=bool)[labels.astype(np.int64).reshape(-1)]
    columns = [1] if scores.shape[1] == 2 and not multilabel else range(scores.shape[1])
    counts = resample_counts(np.asarray(indices), len(labels))
    per_column = np.stack([_weighted_binary_auc(onehot[:, c], scores[:, c], counts) for c in columns])
    with warnings.catch_warnings():  # a resample where no column is defined: NaN is the intended answer
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_column, axis=0)


def percentile_interval(
    estimate: float, replicates: np.ndarray, *, level: float = LEVEL, method: str = "bootstrap"
) -> Interval:
    """Percentile interval of the finite ``replicates`` (R,) around ``estimate``."""
    finite = np.asarray(replicates, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return Interval(estimate, math.nan, math.nan, level, method)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), level, f"{method} ({finite.size} resamples)")


def bootstrap_auc(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    multilabel: bool = False,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """AUC of ``scores`` (N, C) against ``labels`` with a percentile bootstrap interval over the N images."""
    n = len(labels)
    estimate = float(auc_replicates(scores, labels, np.arange(n)[None], multilabel=multilabel)[0])
    replicates = auc_replicates(
        scores, labels, bootstrap_indices(n, resamples=resamples, seed=seed), multilabel=multilabel
    )
    return percentile_interval(estimate, replicates, level=level, method="bootstrap over eval images")


@dataclass(frozen=True)
class Contrast:
    """A paired contrast between inits: its interval, the per-seed values, and the weights that define it."""

    interval: Interval
    per_seed: dict[int, float]
    weights: dict[str, float]

    def to_dict(self) -> dict:
        return {
            **self.interval.to_dict(),
            "per_seed": {str(k): v for k, v in self.per_seed.items()},
            "weights": self.weights,
        }


def _normal_quantile(level: float) -> float:
    return float(scipy_stats.norm.ppf((1 + level) / 2))


def paired_contrast(
    values: Mapping[str, Mapping[int, float | None]],
    weights: Mapping[str, float],
    *,
    image_replicates: np.ndarray | None = None,
    level: float = LEVEL,
    resampled: str = "eval images",
) -> Contrast | None:
    """Σ_init weight·value, averaged over the seeds every weighted init has, with a t interval.

    ``values[init][seed]``: a per-seed statistic (e.g. final AUC); ``weights`` e.g. ``{"pretrained": 1,
    "random": -1}`` (a difference) or ``{"transfusion-2": 1, "random": -0.5, "pretrained": -0.5}`` (is k=2
    past half-way between random and pretrained?). ``image_replicates`` (R,): the same contrast, averaged over
    seeds, on R bootstrap resamples of the eval images shared by every run; its variance joins the seed
    variance in the standard error; ``resampled`` names what those resamples drew (the interval's method
    says it), e.g. ``"filters"`` for replicates over each run's first-layer filters. Returns None when no
    seed has every weighted value.
    """
    missing = sorted(set(weights) - set(values))
    if missing:
        raise AnalysisKeyError(f"no values for init {missing[0]!r}; inits with values: {', '.join(values)}")
    common = sorted(set.intersection(*(set(values[init]) for init in weights)))
    per_seed = {
        seed: float(sum(w * values[init][seed] for init, w in weights.items()))
        for seed in common
        if all(_defined(values[init][seed]) for init in weights)
    }
    if not per_seed:
        return None
    diffs = np.array(list(per_seed.values()))
    n = diffs.size
    estimate = float(diffs.mean())
    seed_var = float(diffs.var(ddof=1)) / n if n > 1 else 0.0
    image_var = 0.0
    if image_replicates is not None:
        finite = np.asarray(image_replicates, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        image_var = float(finite.var(ddof=1)) if finite.size > 1 else 0.0
    se = math.sqrt(seed_var + image_var)
    if n == 1 and image_var == 0.0:  # one seed and no image resamples: no spread to estimate
        nan = math.nan
        return Contrast(
            Interval(estimate, nan, nan, level, "1 seed, no image resamples: no interval"),
            per_seed,
            dict(weights),
        )
    # Welch-Satterthwaite: the seed part has n - 1 degrees of freedom, the image part (many resamples) ~inf.
    dof = (seed_var + image_var) ** 2 / (seed_var**2 / (n - 1)) if n > 1 and seed_var > 0 else math.inf
    quantile = (
        float(scipy_stats.t.ppf((1 + level) / 2, dof)) if math.isfinite(dof) else _normal_quantile(level)
    )
    method = f"paired t over {n} seeds" if n > 1 else f"1 seed: {resampled} only"
    if image_replicates is not None and n > 1:
        method += f" + bootstrap over {resampled} (Welch-Satterthwaite df)"
    interval = Interval(estimate, estimate - quantile * se, estimate + quantile * se, level, method)
    return Contrast(interval, per_seed, dict(weights))


def paired_difference(
    a: Mapping[int, float | None],
    b: Mapping[int, float | None],
    *,
    image_replicates: np.ndarray | None = None,
    level: float = LEVEL,
) -> Contrast | None:
    """``a - b`` paired by seed (``a[seed]``, ``b[seed]``), with the interval of ``paired_contrast``."""
    return paired_contrast(
        {"a": a, "b": b}, {"a": 1.0, "b": -1.0}, image_replicates=image_replicates, level=level
    )


def verdict(interval: Interval | None, claim: Claim, *, bound: float = 0.0, margin: float = 0.0) -> str:
    """``supported`` / ``contradicted`` / ``inconclusive`` for ``claim`` by ``VERDICT_RULE``.

    ``claim="greater"``: the statistic exceeds ``bound``; ``"less"``: it is below ``bound``; ``"equivalent"``:
    it lies within ``bound ± margin`` (``margin`` > 0).
    """
    if claim not in ("greater", "less", "equivalent"):
        raise AnalysisError(f"unknown claim {claim!r}; choose greater, less or equivalent")
    if claim == "equivalent" and margin <= 0:
        raise AnalysisError(f"an equivalence claim needs a margin > 0, got {margin}")
    if interval is None or not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return "inconclusive"
    low, high = interval.low - bound, interval.high - bound
    if claim == "greater":
        return "supported" if low > 0 else "contradicted" if high < 0 else "inconclusive"
    if claim == "less":
        return "supported" if high < 0 else "contradicted" if low > 0 else "inconclusive"
    if -margin < low and high < margin:
        return "supported"
    return "contradicted" if low > margin or high < -margin else "inconclusive"


def t_interval(values: Sequence[float], *, level: float = LEVEL) -> Interval | None:
    """Mean of ``values`` (e.g. one per seed) with a t interval; None for fewer than two values."""
    array = np.asarray([v for v in values if _defined(v)], dtype=np.float64)
    if array.size < 2:
        return None
    half = (
        float(scipy_stats.t.ppf((1 + level) / 2, array.size - 1)) * array.std(ddof=1) / math.sqrt(array.size)
    )
    mean = float(array.mean())
    return Interval(mean, mean - half, mean + half, level, f"t over {array.size} values")
