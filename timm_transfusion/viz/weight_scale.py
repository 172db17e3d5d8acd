"""Weight scale per layer: one line per init of each weight tensor's std (log scale), input to output."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .figures import new_figure, save_png

if TYPE_CHECKING:
    from timm_transfusion.init.scales import TensorScale


def plot_weight_scales(scales: Sequence[TensorScale], path: str | Path, *, title: str = "") -> Path:
    """Std of every weight tensor (y, log) per init (one line each) against the tensor's depth (x)."""
    inits = list(scales[0].std)
    figure = new_figure(figsize=(max(6.0, 0.12 * len(scales) + 3.0), 3.8), dpi=120)
    axes = figure.subplots()
    positions = range(len(scales))
    for init in inits:
        style = {"linewidth": 2.2, "color": "black"} if init == "pretrained" else {"linewidth": 1.3}
        label = "source (pretrained)" if init == "pretrained" else init
        axes.plot(positions, [s.std[init] for s in scales], marker=".", label=label, **style)
    axes.set_yscale("log")
    step = max(1, len(scales) // 20)
    ticks = list(positions)[::step]
    axes.set_xticks(ticks, [scales[i].key.removesuffix(".weight") for i in ticks], rotation=60, ha="right")
    axes.tick_params(axis="x", labelsize=6)
    axes.set_ylabel("weight std (log)")
    axes.set_xlabel("weight tensor (input → output)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(frameon=False, fontsize=8)
    axes.set_title(title or "Per-layer weight scale: source vs the inits", fontsize=9)
    figure.tight_layout()
    return save_png(figure, path)
