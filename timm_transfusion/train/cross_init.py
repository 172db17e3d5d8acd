"""Pretrained vs random after fine-tuning, per layer, against the seed baseline random vs random.

The paper's evidence that transfer's higher-layer features are not reused: the fine-tuned pretrained model and
the fine-tuned random one are, in their higher layers, about as similar as two random inits that differ only
in the seed. Each comparison is a layer-wise similarity of two fine-tuned run folders on the same eval images:
A vs B for every seed both inits ran, B vs B for every pair of B's seeds. Intervals come from one shared
bootstrap over groups of eval images (``train.stats``), so the difference A-vs-B minus B-vs-B is paired
resample by resample; the per-pair values are kept to show the spread over seeds. Each layer also carries
the null (the same metric on unpaired images) and the bias note of ``similarity.null``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import write_text_atomic
from ..similarity import SimilarityReport, compare
from ..similarity.sources import default_img_size, image_batches, load_model
from .errors import AnalysisError, AnalysisKeyError
from .stats import Interval, bootstrap_indices, percentile_interval, resample_counts

CROSS_METRICS = ("pwcca", "linear_cka")
EVAL_IMAGES = 512
IMAGE_GROUPS = 20
RESAMPLES = 200


@dataclass(frozen=True)
class CrossInitLayer:
    """One layer and metric: A vs B and B vs B (means over pairs, image-bootstrap intervals), their paired
    difference, the mean null of the A-vs-B pairs (and of the B-vs-B pairs: the null depends on both sides),
    and every pair's own value (keys "s" and "s-t")."""

    layer: str
    metric: str
    features: int
    datapoints: int
    a_vs_b: Interval | None
    b_vs_b: Interval | None
    difference: Interval | None
    null: float | None
    pairs_a_vs_b: dict[str, float | None]
    pairs_b_vs_b: dict[str, float | None]
    note: str | None = None
    null_b_vs_b: float | None = None

    def to_dict(self) -> dict:
        intervals = {k: None if v is None else v.to_dict() for k, v in self._intervals().items()}
        return {
            "layer": self.layer,
            "metric": self.metric,
            "features": self.features,
            "datapoints": self.datapoints,
            **intervals,
            "null": self.null,
            "null_b_vs_b": self.null_b_vs_b,
            "pairs_a_vs_b": self.pairs_a_vs_b,
            "pairs_b_vs_b": self.pairs_b_vs_b,
            "note": self.note,
        }

    def _intervals(self) -> dict[str, Interval | None]:
        return {"a_vs_b": self.a_vs_b, "b_vs_b": self.b_vs_b, "difference": self.difference}


@dataclass(frozen=True)
class CrossInitSimilarity:
    """Layer-wise A vs B against B vs B for every metric; ``layers`` in input-to-output order per metric."""

    a: str
    b: str
    images: int
    metrics: tuple[str, ...]
    layers: list[CrossInitLayer]
    groups: int
    resamples: int

    def for_metric(self, metric: str) -> list[CrossInitLayer]:
        if metric not in self.metrics:
            raise AnalysisKeyError(f"no metric {metric!r}; metrics: {list(self.metrics)}")
        return [entry for entry in self.layers if entry.metric == metric]

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "images": self.images,
            "metrics": list(self.metrics),
            "groups": self.groups,
            "resamples": self.resamples,
            "layers": [entry.to_dict() for entry in self.layers],
        }


def cross_init_similarity(
    a_runs: Mapping[int, str | Path],
    b_runs: Mapping[int, str | Path],
    *,
    dataset: str,
    split: str = "test",
    names: tuple[str, str] = ("pretrained", "random"),
    metrics: Sequence[str] = CROSS_METRICS,
    images: int = EVAL_IMAGES,
    groups: int = IMAGE_GROUPS,
    resamples: int = RESAMPLES,
    seed: int = 0,
    max_positions: int | None = 64,
    progress: bool = False,
) -> CrossInitSimilarity:
    """Compare fine-tuned run folders by seed: ``a_runs[s]`` with ``b_runs[s]`` (every seed in both) and
    ``b_runs[s]`` with ``b_runs[t]`` (every pair s < t), on up to ``images`` images of ``split``.

    Intervals: bootstrap (``resamples``) over ``groups`` groups of images, the same resamples for every
    pair, the percentile interval joined with the basic one (see ``bootstrap_interval``: resampling
    inflates CCA where datapoints per feature are few; read the null and the bias note too). With one
    seed of B there is no seed baseline (``b_vs_b`` and ``difference`` None).
    """
    common = sorted(set(a_runs) & set(b_runs))
    if not common:
        raise AnalysisError(
            f"{names[0]} ran seeds {sorted(a_runs)} and {names[1]} seeds {sorted(b_runs)}: no seed in common"
        )
    weights = resample_counts(bootstrap_indices(groups, resamples=resamples, seed=seed), groups)
    models = {folder: load_model(str(folder)) for folder in {*a_runs.values(), *b_runs.values()}}
    first = models[a_runs[common[0]]]
    loader, preprocess = image_batches(
        dataset, first, split=split, img_size=_img_size(Path(a_runs[common[0]]), first), limit=images
    )

    def report(left, right, label: str) -> SimilarityReport:
        return compare(
            models[left],
            models[right],
            loader,
            metrics=tuple(metrics),
            preprocess=preprocess,
            max_positions=max_positions,
            replicate_weights=weights,
            names=(label, label),
            progress=progress,
        )

    a_vs_b = {str(s): report(a_runs[s], b_runs[s], f"{names[0]} vs {names[1]}") for s in common}
    seeds_b = sorted(b_runs)
    b_vs_b = {
        f"{s}-{t}": report(b_runs[s], b_runs[t], f"{names[1]} seed vs seed")
        for s, t in itertools.combinations(seeds_b, 2)
    }
    layers = [
        _layer(index, metric, a_vs_b, b_vs_b)
        for metric in metrics
        for index in range(len(_layers_of(a_vs_b)))
    ]
    images_seen = next(iter(a_vs_b.values())).images
    return CrossInitSimilarity(names[0], names[1], images_seen, tuple(metrics), layers, groups, resamples)


def _layers_of(reports: Mapping[str, SimilarityReport]) -> list:
    return next(iter(reports.values())).layers


def _img_size(folder: Path, model) -> int:
    """The image size the run trained at (summary.json), else the model's own."""
    summary = folder / "summary.json"
    if summary.is_file():
        size = json.loads(summary.read_text()).get("img_size")
        if size:
            return int(size)
    return default_img_size(model)


def _mean_with_interval(reports: Mapping[str, SimilarityReport], index: int, metric: str):
    """(per-pair values, the mean over pairs with its interval, the per-resample means) or Nones."""
    entries = [report.layers[index] for report in reports.values()]
    values = {key: entry.values.get(metric) for key, entry in zip(reports, entries, strict=True)}
    if not entries or any(v is None for v in values.values()):
        return values, None, None
    replicates = np.array(
        [[np.nan if r is None else r for r in entry.replicates.get(metric, [])] for entry in entries],
        dtype=float,
    )
    means = replicates.mean(axis=0) if replicates.size else np.array([])
    estimate = float(np.mean(list(values.values())))
    return values, bootstrap_interval(estimate, means), means


def bootstrap_interval(estimate: float, replicates: np.ndarray) -> Interval:
    """The percentile interval of ``replicates`` (R,) joined with its reflection about ``estimate`` (the
    basic bootstrap, 2θ̂ − [q_high, q_low]).

    Resampling repeats images, and repeated datapoints raise CCA-family values and CKA, most where
    datapoints per feature are few: there the replicates can lie wholly above the estimate, so the
    percentile interval misses it from above and the basic one, which corrects a shift of that kind,
    from below. Not knowing which is right, the report takes both; the join always holds the estimate.
    """
    percentiles = percentile_interval(estimate, replicates)
    low = min(percentiles.low, 2 * estimate - percentiles.high)
    high = max(percentiles.high, 2 * estimate - percentiles.low)
    method = percentiles.method.replace("bootstrap", "bootstrap over image groups, percentile ∪ basic", 1)
    return Interval(estimate, low, high, percentiles.level, method)


def _layer(index: int, metric: str, a_vs_b: Mapping, b_vs_b: Mapping) -> CrossInitLayer:
    entry = _layers_of(a_vs_b)[index]
    pairs_ab, interval_ab, means_ab = _mean_with_interval(a_vs_b, index, metric)
    pairs_bb, interval_bb, means_bb = (
        _mean_with_interval(b_vs_b, index, metric) if b_vs_b else ({}, None, None)
    )
    difference = None
    if interval_ab is not None and interval_bb is not None:
        difference = bootstrap_interval(interval_ab.estimate - interval_bb.estimate, means_ab - means_bb)
    null, null_bb = _mean_null(a_vs_b, index, metric), _mean_null(b_vs_b, index, metric)
    return CrossInitLayer(
        entry.name,
        metric,
        max(entry.features_a, entry.features_b),
        entry.datapoints,
        interval_ab,
        interval_bb,
        difference,
        null,
        pairs_ab,
        pairs_bb,
        entry.note,
        null_bb,
    )


def _mean_null(reports: Mapping[str, SimilarityReport], index: int, metric: str) -> float | None:
    nulls = [report.layers[index].null.get(metric) for report in reports.values()]
    return float(np.mean(nulls)) if nulls and all(v is not None for v in nulls) else None


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cell(interval: Interval | None) -> str:
    return "n/a" if interval is None else interval.format(3)


def cross_init_table(result: CrossInitSimilarity, metric: str = "pwcca") -> list[str]:
    """Markdown lines: per layer, A vs B and B vs B with 95 % intervals, their difference, and the nulls of
    both comparisons; * marks fewer than 10 datapoints per feature."""
    a, b = result.a, result.b
    lines = [
        f"| layer | datapoints / feature | {a} vs {b} | {b} seed vs seed | difference | null (A vs B / B vs B) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for entry in result.for_metric(metric):
        null = f"{_number(entry.null)} / {_number(entry.null_b_vs_b)}"
        ratio = entry.datapoints / entry.features
        lines.append(
            f"| {entry.layer} | {ratio:.0f}{'*' if entry.note and 'biased' in entry.note else ''} | "
            f"{_cell(entry.a_vs_b)} | {_cell(entry.b_vs_b)} | {_cell(entry.difference)} | {null} |"
        )
    return lines


def write_cross_init(
    folder: str | Path, result: CrossInitSimilarity, *, name: str = "cross_init"
) -> dict[str, Path]:
    """``<name>.json`` (everything), ``<name>.csv`` (layer × metric × comparison) and ``<name>.png``."""
    from ..viz.cross_init import plot_cross_init

    folder = Path(folder)
    paths = {kind: folder / f"{name}.{kind}" for kind in ("json", "csv", "png")}
    write_text_atomic(paths["json"], json.dumps(result.to_dict(), indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["layer", "metric", "comparison", "estimate", "low", "high", "null", "datapoints", "features"]
    )
    for entry in result.layers:
        nulls = {"a_vs_b": entry.null, "b_vs_b": entry.null_b_vs_b, "difference": None}
        for comparison, interval in entry._intervals().items():
            if interval is not None:
                null = nulls[comparison]
                writer.writerow(
                    [entry.layer, entry.metric, comparison, interval.estimate, interval.low, interval.high]
                    + ["" if null is None else null, entry.datapoints, entry.features]
                )
    write_text_atomic(paths["csv"], buffer.getvalue())
    plot_cross_init(result, paths["png"])
    return paths
