"""Pretrained vs random against random seed vs seed, per layer: one panel per metric, 95 % bands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .figures import new_figure, save_png

if TYPE_CHECKING:
    from timm_transfusion.train.cross_init import CrossInitSimilarity


def plot_cross_init(result: CrossInitSimilarity, path: str | Path) -> Path:
    """Per metric: A vs B and B vs B (mean over pairs, band = 95 % interval over images) and their nulls
    (grey, dashed and dotted) against the layers, input to output."""
    figure = new_figure(figsize=(5.2 * len(result.metrics), 3.8), dpi=120)
    panels = figure.subplots(1, len(result.metrics), squeeze=False)[0]
    for axes, metric in zip(panels, result.metrics, strict=True):
        entries = result.for_metric(metric)
        x = range(len(entries))
        for attribute, label in (
            ("a_vs_b", f"{result.a} vs {result.b}"),
            ("b_vs_b", f"{result.b} seed vs seed"),
        ):
            intervals = [getattr(entry, attribute) for entry in entries]
            if all(interval is None for interval in intervals):
                continue
            nan = float("nan")
            line = axes.plot(
                x, [nan if i is None else i.estimate for i in intervals], marker="o", label=label
            )[0]
            axes.fill_between(
                x,
                [nan if i is None else i.low for i in intervals],
                [nan if i is None else i.high for i in intervals],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
        for attribute, label, style in (("null", result.a, "--"), ("null_b_vs_b", result.b, ":")):
            nulls = [getattr(entry, attribute) for entry in entries]
            if any(v is not None for v in nulls):
                y = [float("nan") if v is None else v for v in nulls]
                axes.plot(x, y, linestyle=style, color="grey", label=f"null, {label} pairs (unpaired images)")
        axes.set_xticks(list(x), [entry.layer for entry in entries], rotation=35, ha="right")
        axes.set_ylim(0.0, 1.02)
        axes.set_ylabel(metric)
        axes.set_xlabel("layer (input → output)")
        axes.grid(alpha=0.3)
        axes.legend(frameon=False, fontsize=8)
        axes.set_title(
            f"{metric} after fine-tuning ({result.images} images; band: 95 % interval)", fontsize=9
        )
    figure.tight_layout()
    return save_png(figure, path)
