"""The transfusion sweep plot: convergence against how much of the source network is reused.

Left: area under AUC vs log(step) per init (every seed a dot, the mean a bar); right: steps to a threshold.
The x axis runs random (nothing reused) → transfusion-0 … k → pretrained (everything but the head).
"""

from __future__ import annotations

import math
from pathlib import Path

from .figures import new_figure, save_png


def _panel(axes, inits: list[str], values: dict[str, dict[int, float | None]], ylabel: str) -> None:
    for x, init in enumerate(inits):
        points = [v for v in values.get(init, {}).values() if v is not None and math.isfinite(v)]
        if points:
            axes.bar(x, sum(points) / len(points), color="#9ecae1", width=0.6)
            axes.plot([x] * len(points), points, "o", color="#08519c", markersize=4)
        else:
            axes.text(x, 0, "not\nreached", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(inits)), inits, rotation=35, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3, axis="y")


def plot_sweep(
    areas: dict[str, dict[int, float | None]],
    steps: dict[str, dict[int, float | None]],
    path: str | Path,
    *,
    threshold: float | None = None,
    title: str = "",
) -> Path:
    """``areas[init][seed]`` and ``steps[init][seed]`` (inits in sweep order) as a two-panel PNG at ``path``."""
    inits = list(areas)
    panels = 2 if steps and threshold is not None else 1
    figure = new_figure(figsize=(max(5.0, 0.55 * len(inits) + 2.5) * panels, 3.8), dpi=120)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    _panel(axes[0], inits, areas, "area under AUC vs log(step)")
    finite = [v for seeds in areas.values() for v in seeds.values() if v is not None and math.isfinite(v)]
    if finite:
        axes[0].set_ylim(max(0.0, min(finite) - 0.05), min(1.0, max(finite) + 0.03))
    if panels == 2:
        _panel(axes[1], inits, steps, f"steps to AUC {threshold:g} (interpolated)")
    figure.suptitle(title or "Transfusion sweep (dots: seeds, bars: mean)", fontsize=9)
    figure.tight_layout()
    return save_png(figure, path)
