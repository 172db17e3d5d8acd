"""Sample covariance blocks of paired activations: what every CCA variant is computed from."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Covariance:
    """Sample covariance blocks (ddof=1) of paired activations: xx (dx, dx), xy (dx, dy), yy (dy, dy)."""

    n: int
    mean_x: torch.Tensor
    mean_y: torch.Tensor
    xx: torch.Tensor
    xy: torch.Tensor
    yy: torch.Tensor
