"""The paper's analyses beyond training curves, as report sections and findings.

Each turns library results (``train.cross_init``, ``init.scales``, ``similarity.gabor`` with their intervals
from ``train.analyses``) into a Markdown section, its files next to results.md, and, where the paper made a
claim, a ``Finding`` judged by the stated rule.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .analyses import gabor_seed_contrast, gabor_table, scale_intervals, write_gabor, write_weight_scales
from .analysis import InitRuns
from .cross_init import cross_init_similarity, cross_init_table, write_cross_init
from .findings import Finding, judge

SIMILARITY_MARGIN = 0.05  # "about as similar": within ±0.05 PWCCA of the seed baseline

CROSS_CLAIM = "Pretrained and random converge to similar higher-layer representations"
CROSS_STATISTIC = "PWCCA(pretrained, random) − PWCCA(random seed s, seed t), highest layer with a value"
GABOR_CLAIM = "Gabor-like first-layer filters appear only with pretraining"
GABOR_STATISTIC = "Gabor score of first-layer filters after fine-tuning, pretrained − random, paired by seed"
COMPARED = ("pretrained", "random")


def cross_init_section(
    groups: dict[str, InitRuns], *, dataset: str, split: str, folder: Path, name: str = "cross_init"
) -> tuple[list[str], Finding]:
    """Pretrained vs random after fine-tuning per layer, next to random seed vs seed; the finding from the
    highest layer whose paired difference is defined (equivalence within ``SIMILARITY_MARGIN``)."""
    missing = [init for init in ("pretrained", "random") if init not in groups]
    if missing or len(groups["random"].runs) < 2:
        reason = f"no {missing[0]} runs" if missing else "one random seed: no seed baseline"
        return [], judge(
            CROSS_CLAIM, CROSS_STATISTIC, None, "equivalent", margin=SIMILARITY_MARGIN, missing=reason
        )
    result = cross_init_similarity(
        {s: r.folder for s, r in groups["pretrained"].runs.items()},
        {s: r.folder for s, r in groups["random"].runs.items()},
        dataset=dataset,
        split=split,
    )
    write_cross_init(folder, result, name=name)
    layers = [entry for entry in result.for_metric("pwcca") if entry.difference is not None]
    top = layers[-1] if layers else None
    finding = judge(
        CROSS_CLAIM,
        CROSS_STATISTIC + (f" ({top.layer})" if top else ""),
        None if top is None else top.difference,
        "equivalent",
        margin=SIMILARITY_MARGIN,
        missing="no layer with enough datapoints for PWCCA",
    )
    lines = [
        "PWCCA of the fine-tuned pretrained model against the fine-tuned random one (same seed), next to two "
        "random seeds against each other (the paper's baseline), on the eval images; 95 % intervals from a "
        "bootstrap over groups of images, paired between the two comparisons. Null: the same metric on "
        "unpaired images (what unrelated representations score at this n and d); * marks fewer than 10 "
        "datapoints per feature (CCA biased upwards).",
        "",
        *cross_init_table(result),
        "",
        f"![pretrained vs random]({name}.png)",
        "",
    ]
    return lines, finding


def gabor_section(
    filters: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]], *, folder: Path, name: str = "gabor"
) -> tuple[list[str], Finding, dict]:
    """Gabor scores of every init's first-layer filters before and after fine-tuning, for every seed
    (``filters[init][seed] = (before, after)``), and the finding pretrained − random after fine-tuning > 0,
    paired by seed (t over seeds with the bootstrap over filters, as for AUC: one seed is inconclusive)."""
    from ..similarity.gabor import score_seed_filter_pairs

    scores = score_seed_filter_pairs(filters)
    measured = None
    if set(COMPARED) <= set(scores):
        after = {init: {s: by_time["after"] for s, by_time in scores[init].items()} for init in COMPARED}
        measured = gabor_seed_contrast(after, {"pretrained": 1.0, "random": -1.0})
    write_gabor(folder, scores, name=name, difference=measured)
    first = next(iter(next(iter(filters.values())).values()))[0]
    shape = "×".join(map(str, first.shape))
    paired = 0 if measured is None else len(measured.per_seed)
    finding = judge(
        GABOR_CLAIM,
        GABOR_STATISTIC,
        measured,
        "greater",
        missing="needs pretrained and random runs with a common seed",
        note=f"{paired} seeds paired, {shape} filters" if paired > 1 else f"{shape} filters",
    )
    lines = [
        "Gabor score: each filter's best correlation with a fixed bank of Gabor filters (colour-weighted); "
        "the null is noise of the same shape. Every seed's filters are scored; an init's score is the mean "
        "over seeds of each seed's mean. 95 % intervals across seeds: a t interval over seeds whose "
        "standard error also carries the bootstrap variance over each run's filters (as for AUC, with "
        "filters in place of eval images); per seed: a bootstrap over that seed's filters.",
        "",
        *gabor_table(scores),
        "",
    ]
    if measured is not None:
        per_seed = ", ".join(f"seed {s}: {v:+.3f}" for s, v in measured.per_seed.items())
        lines += [
            f"Pretrained − random after fine-tuning, paired by seed: {measured.interval.format()} "
            f"({per_seed}; {measured.interval.method}).",
            "",
        ]
    return lines, finding, scores


def weight_scale_section(
    model: torch.nn.Module, source: str, *, folder: Path, name: str = "weight_scale"
) -> list[str]:
    """Per weight tensor the std of the source, of timm's random init, of Mean Var and of the rescaled init;
    summarised as the typical factor between each init's and the source's scale (t interval over tensors)."""
    from ..init.scales import weight_scales

    scales = weight_scales(model, source)
    write_weight_scales(folder, scales, name=name, title="Weight std per tensor: source vs inits")
    lines = [
        "How far each init's weight scale is from the pretrained source's, over the weight tensors: the mean "
        "|log2 std ratio| (0 = every tensor at the source's scale; as a factor 2^x) with a 95 % t interval "
        f"over tensors. Every tensor: `{name}.md` / `{name}.csv`.",
        "",
        "| init | tensors | typical factor vs source | mean log2 ratio [95 %] | within ×1.25 of the source |",
        "|---|---:|---:|---:|---:|",
    ]
    for init in [i for i in scales[0].std if i != "pretrained"]:
        summary = scale_intervals(scales, init)
        interval = summary["mean_log2_ratio_interval"]
        cell = (
            "-"
            if interval is None
            else f"{interval['estimate']:+.2f} [{interval['low']:+.2f}, {interval['high']:+.2f}]"
        )
        factor = summary["typical_factor"]
        lines.append(
            f"| {init} | {summary['tensors']} | ×{factor:.2f} | {cell} | {summary['within_1_25']:.0%} |"
            if math.isfinite(factor)
            else f"| {init} | {summary['tensors']} | - | {cell} | - |"
        )
    return [*lines, "", f"![weight scales]({name}.png)", ""]
