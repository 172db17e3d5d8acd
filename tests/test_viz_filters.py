"""The first-layer filter mosaic and plot: sized to the filters, not to a fixed canvas."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from timm_transfusion.viz.filters import filter_grid, grid_columns, plot_filters


def _white_share(mosaic: np.ndarray) -> float:
    return float((mosaic == 1).all(axis=2).mean())


def test_eight_small_filters_fill_a_two_by_four_mosaic_with_thin_lines():
    weight = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    mosaic = filter_grid(weight)
    assert grid_columns(8) == 4
    assert mosaic.shape == (2 * 12 + 1, 4 * 12 + 3, 3)  # 3×3 kernels magnified 4×, one-pixel lines
    assert _white_share(mosaic) < 0.1


def test_every_filter_is_scaled_to_its_own_range():
    weight = torch.randn(6, 3, 7, 7, generator=torch.Generator().manual_seed(1))
    weight[0] *= 100
    mosaic = filter_grid(weight)
    first = mosaic[:7, :7]
    second = mosaic[:7, 8:15]
    assert first.min() == 0 and first.max() == 1 and second.min() == 0 and second.max() == 1


def test_the_filters_cover_most_of_the_plot(tmp_path):
    """MobileNet's 8 filters of 3×3 used to sit in thin strips of a fixed 7-inch canvas (a third of it)."""
    small = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(2))
    path = plot_filters({"random": (small, small), "pretrained": (small, small)}, tmp_path / "filters.png")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    coloured = (pixels < 235).any(axis=2).mean()  # filter pixels; the background and lines are white
    assert coloured > 0.5
