"""First-layer filter pictures: each init's conv1 before and after training (the paper's Gabor figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import TransfusionError
from .figures import new_figure, save_png


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


def filter_grid(weight: torch.Tensor, max_filters: int = 32, columns: int = 8) -> np.ndarray:
    """(out, 3, k, k) -> an RGB mosaic (rows*(k+1), columns*(k+1), 3) in [0, 1], each filter scaled on its own."""
    filters = weight[:max_filters].numpy()
    count, _, k, _ = filters.shape
    rows = -(-count // columns)
    mosaic = np.ones((rows * (k + 1), columns * (k + 1), 3))
    for i, f in enumerate(filters):
        f = f.transpose(1, 2, 0)
        f = (f - f.min()) / (f.max() - f.min() + 1e-12)
        r, c = divmod(i, columns)
        mosaic[r * (k + 1) : r * (k + 1) + k, c * (k + 1) : c * (k + 1) + k] = f
    return mosaic


def plot_filters(
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | Path, *, title: str = ""
) -> Path:
    """``pairs[init] = (before, after)`` first-layer weights; one row per init, before | after."""
    mosaics = {init: (filter_grid(before), filter_grid(after)) for init, (before, after) in pairs.items()}
    aspect = max(m[0].shape[0] / m[0].shape[1] for m in mosaics.values())
    fig = new_figure(figsize=(7, len(pairs) * (3.4 * aspect + 0.45) + 0.5))
    axes = fig.subplots(len(pairs), 2, squeeze=False)
    for row, (init, images) in enumerate(mosaics.items()):
        for col, (mosaic, when) in enumerate(zip(images, ("before", "after"), strict=True)):
            ax = axes[row, col]
            ax.imshow(mosaic, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{init}: {when} training", fontsize=9)
    fig.suptitle(title or "First-layer filters (each scaled to its own range)", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=130)
