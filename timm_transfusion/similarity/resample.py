"""Resampling groups of images for similarity intervals, from the moments of each group.

A bootstrap over images needs, per resample, the moments of the images drawn. Images are dealt into G
groups (image i to group i mod G) and each group keeps its own moments (O(G·d²) memory, still one pass);
a resample weights each group by how often it was drawn, and the weighted merge below gives the moments
of that resample exactly. The resampling weights come from the caller (``train.stats.bootstrap_indices``
and ``resample_counts`` over the G groups), so one bootstrap serves every report and pairs across models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import NotEnoughDataError, SimilarityOptionError
from .moments import MomentAccumulator


class GroupedMoments:
    """The moments of G groups of datapoints, stacked: counts (G,), means (G, d), scatters (G, d, d)."""

    def __init__(self, groups: Sequence[MomentAccumulator]) -> None:
        filled = [g for g in groups if g.n > 0]
        if not filled:
            raise NotEnoughDataError("every group of images is empty")
        if any(g.fourth_moments for g in groups):
            raise SimilarityOptionError("resampled moments do not carry fourth-order sums (debiased CKA)")
        dx, dy = filled[0].features
        device = filled[0].mean_x.device

        def stacked(name: str, shape: tuple[int, ...]) -> torch.Tensor:
            zero = torch.zeros(shape, dtype=torch.float64, device=device)
            return torch.stack([getattr(g, name).to(device) if g.n > 0 else zero for g in groups])

        self.counts = torch.tensor([float(g.n) for g in groups], dtype=torch.float64, device=device)
        self.mean_x, self.mean_y = stacked("mean_x", (dx,)), stacked("mean_y", (dy,))
        self.scatter_xx = stacked("scatter_xx", (dx, dx))
        self.scatter_yy = stacked("scatter_yy", (dy, dy))
        self.scatter_xy = stacked("scatter_xy", (dx, dy))

    @property
    def groups(self) -> int:
        return self.counts.numel()

    def weighted(self, weights: Sequence[float] | np.ndarray | torch.Tensor) -> MomentAccumulator:
        """The moments of the data in which group g occurs ``weights[g]`` times (e.g. bootstrap counts)."""
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64), device=self.counts.device)
        if w.shape != self.counts.shape or bool((w < 0).any()):
            raise SimilarityOptionError(
                f"weights must be {self.groups} non-negative numbers, one per group; got shape {tuple(w.shape)}"
            )
        mass = w * self.counts
        n = float(mass.sum())
        if n < 2:
            raise NotEnoughDataError(f"a resample holds {n:g} datapoints; a covariance needs at least 2")
        mean_x, mean_y = mass @ self.mean_x / n, mass @ self.mean_y / n
        shift_x, shift_y = self.mean_x - mean_x, self.mean_y - mean_y
        result = MomentAccumulator(device=self.counts.device)
        result.n = int(round(n))
        result.mean_x, result.mean_y = mean_x, mean_y
        result.scatter_xx = torch.einsum("g,gij->ij", w, self.scatter_xx) + shift_x.T @ (
            mass[:, None] * shift_x
        )
        result.scatter_yy = torch.einsum("g,gij->ij", w, self.scatter_yy) + shift_y.T @ (
            mass[:, None] * shift_y
        )
        result.scatter_xy = torch.einsum("g,gij->ij", w, self.scatter_xy) + shift_x.T @ (
            mass[:, None] * shift_y
        )
        return result

    def total(self) -> MomentAccumulator:
        """The moments of every datapoint once."""
        return self.weighted(np.ones(self.groups))


def check_replicate_weights(weights: np.ndarray | None) -> np.ndarray | None:
    """``weights`` as a float (R, G) array with R ≥ 1 and G ≥ 2, or None."""
    if weights is None:
        return None
    array = np.asarray(weights, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 2 or not np.isfinite(array).all():
        raise SimilarityOptionError(
            "replicate_weights must be a finite (resamples, groups) array with groups ≥ 2, e.g. "
            f"train.stats.resample_counts(bootstrap_indices(20), 20); got shape {array.shape}"
        )
    return array
