"""Layer-wise similarity profile (as in the paper's CCA figures): one line per metric across the layers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..files import atomic_path

if TYPE_CHECKING:
    from timm_transfusion.similarity.report import SimilarityReport


def plot_similarity(report: SimilarityReport, path: str | Path, *, title: str | None = None) -> Path:
    """Write a PNG of each metric (y, 0–1) against the layers (x, input to output); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [entry.name for entry in report.layers]
    figure, axes = plt.subplots(figsize=(max(5.0, 0.7 * len(names) + 2.0), 3.6), dpi=120)
    for metric in report.metrics:
        values = [float("nan") if v is None else v for v in report.column(metric)]
        axes.plot(range(len(names)), values, marker="o", label=metric)
    axes.set_xticks(range(len(names)), names, rotation=35, ha="right")
    axes.set_ylim(0.0, 1.02)
    axes.set_ylabel("similarity")
    axes.set_xlabel("layer (input → output)")
    axes.grid(alpha=0.3)
    axes.legend(frameon=False)
    axes.set_title(title or f"{report.model_a} vs {report.model_b} ({report.images} images)", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
    return path
