"""First-layer filter pictures: each init's conv1 before and after training (the paper's Gabor figure)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import TransfusionError
from .figures import new_figure, save_png

if TYPE_CHECKING:
    from timm_transfusion.similarity.gabor import GaborScores


class NoFilterError(TransfusionError, ValueError):
    """The model has no first-layer convolution over 3 input channels to draw."""


def first_conv_weight(model: torch.nn.Module) -> torch.Tensor:
    """The first convolution over the RGB input, (out_channels, 3, k, k).

    Uses timm's ``pretrained_cfg["first_conv"]``; falls back to the first 4-D weight with 3 input channels.
    """
    state = model.state_dict()
    name = getattr(model, "pretrained_cfg", {}).get("first_conv")
    if name and f"{name}.weight" in state:
        return state[f"{name}.weight"].detach().float().cpu()
    for tensor in state.values():
        if tensor.ndim == 4 and tensor.shape[1] == 3:
            return tensor.detach().float().cpu()
    raise NoFilterError(f"{type(model).__name__} has no conv weight over 3 input channels")


def grid_columns(count: int) -> int:
    """Columns of a mosaic of ``count`` filters: about twice as wide as tall (8 -> 4×2, 32 -> 8×4)."""
    return max(1, min(count, math.ceil(math.sqrt(2 * count))))


def filter_grid(weight: torch.Tensor, max_filters: int = 32, columns: int | None = None) -> np.ndarray:
    """(out, 3, k, k) -> an RGB mosaic in [0, 1], each filter scaled on its own, a white line between filters.

    ``columns`` defaults to ``grid_columns``, so the mosaic has no empty rows and little empty space. Small
    kernels are magnified (each weight a block of ``12 // k`` pixels) so the separating lines stay thin.
    """
    filters = weight[:max_filters].numpy()
    count, _, height, width = filters.shape
    columns = columns or grid_columns(count)
    rows = -(-count // columns)
    zoom = max(1, 12 // max(height, width))
    cell_h, cell_w = height * zoom, width * zoom
    mosaic = np.ones((rows * (cell_h + 1) - 1, columns * (cell_w + 1) - 1, 3))
    for i, f in enumerate(filters):
        f = f.transpose(1, 2, 0).repeat(zoom, axis=0).repeat(zoom, axis=1)
        f = (f - f.min()) / (f.max() - f.min() + 1e-12)
        r, c = divmod(i, columns)
        mosaic[r * (cell_h + 1) : r * (cell_h + 1) + cell_h, c * (cell_w + 1) : c * (cell_w + 1) + cell_w] = f
    return mosaic


PANEL_WIDTH = 2.6  # inches per mosaic, whatever the kernel size: the figure follows the mosaics' shape
TITLE_HEIGHT = 0.32
BOTTOM_MARGIN = 0.1
TOP_MARGIN = 0.35


def plot_filters(
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]],
    path: str | Path,
    *,
    title: str = "",
    scores: dict[str, dict[str, GaborScores]] | None = None,
) -> Path:
    """``pairs[init] = (before, after)`` first-layer weights; one row per init, before | after.

    Each panel is ``PANEL_WIDTH`` inches wide and as tall as its mosaic, so small kernels (MobileNet's
    8 filters of 3×3) fill their panels. ``scores`` (``similarity.gabor.score_filter_pairs``: one seed) adds
    each panel's mean Gabor score to its title.
    """
    mosaics = {init: (filter_grid(before), filter_grid(after)) for init, (before, after) in pairs.items()}
    aspect = max(m.shape[0] / m.shape[1] for pair in mosaics.values() for m in pair)
    panel_height = PANEL_WIDTH * aspect
    row_height = panel_height + TITLE_HEIGHT
    width, height = 2 * PANEL_WIDTH + 0.3, len(pairs) * row_height + TOP_MARGIN + BOTTOM_MARGIN
    figure = new_figure(figsize=(width, height), dpi=130)
    for row, (init, images) in enumerate(mosaics.items()):
        for col, (mosaic, when) in enumerate(zip(images, ("before", "after"), strict=True)):
            left = (0.1 + col * (PANEL_WIDTH + 0.1)) / width
            bottom = (height - TOP_MARGIN - (row + 1) * row_height) / height
            ax = figure.add_axes((left, bottom, PANEL_WIDTH / width, panel_height / height))
            ax.imshow(mosaic, interpolation="nearest", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            label = f"{init}: {when} training"
            if scores is not None and init in scores:
                label += f" · Gabor {scores[init][when].mean:.2f}"
            ax.set_title(label, fontsize=8)
    figure.suptitle(
        title or "First-layer filters (each scaled to its own range)", fontsize=9, y=1 - 0.12 / height
    )
    return save_png(figure, path)
