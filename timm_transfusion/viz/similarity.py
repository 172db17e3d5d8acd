"""Layer-wise similarity profiles (as in the paper's CCA figures): one line per metric, or per init, across
the layers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .figures import new_figure, save_png


def plot_similarity(
    names: list[str],
    lines: dict[str, list[float | None]],
    path: str | Path,
    *,
    title: str,
    dashed: dict[str, list[float | None]] | None = None,
) -> Path:
    """Write a PNG of each metric's line (y, 0–1) against the layers ``names`` (x, input to output); the
    ``dashed`` lines (null baselines) in the same colours."""
    return _plot_layer_profiles(names, lines, path, title, "similarity", dashed=dashed or {})


def plot_representation_change(
    reports: Mapping[str, Any], path: str | Path, *, metric: str = "pwcca"
) -> Path:
    """One line per init: ``metric`` of each layer at init vs after fine-tuning (1 = unchanged).

    ``reports[init]`` is a ``SimilarityReport`` (anything with ``layers`` and ``column(metric)``); plotting
    does not import the similarity package.
    """
    names = [entry.name for entry in next(iter(reports.values())).layers]
    lines = {init: report.column(metric) for init, report in reports.items()}
    title = f"How much fine-tuning changed each layer ({metric}, model at init vs fine-tuned)"
    return _plot_layer_profiles(names, lines, path, title, f"{metric}: init vs fine-tuned")


def _plot_layer_profiles(
    names: list[str],
    lines: dict[str, list[float | None]],
    path: str | Path,
    title: str,
    ylabel: str,
    *,
    dashed: dict[str, list[float | None]] | None = None,
) -> Path:
    """Each line's values (y, 0–1; None left out) against the layers (x, input to output) as a PNG; the
    ``dashed`` lines (e.g. null baselines, in the order of ``lines``) share their solid line's colour."""
    figure = new_figure(figsize=(max(5.0, 0.7 * len(names) + 2.0), 3.6), dpi=120)
    axes = figure.subplots()
    for label, values in lines.items():
        axes.plot(
            range(len(names)), [float("nan") if v is None else v for v in values], marker="o", label=label
        )
    for (label, values), solid in zip((dashed or {}).items(), axes.get_lines(), strict=False):
        y = [float("nan") if v is None else v for v in values]
        axes.plot(range(len(names)), y, linestyle="--", color=solid.get_color(), alpha=0.7, label=label)
    axes.set_xticks(range(len(names)), names, rotation=35, ha="right")
    axes.set_ylim(0.0, 1.02)
    axes.set_ylabel(ylabel)
    axes.set_xlabel("layer (input → output)")
    axes.grid(alpha=0.3)
    axes.legend(frameon=False)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return save_png(figure, path)
