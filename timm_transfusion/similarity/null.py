"""What unrelated representations score: the null baseline and the small-sample bias of similarity metrics.

A similarity of 0.9 means little on its own: with few datapoints per feature, CCA finds large correlations
between independent data (Σρ² of independent Gaussians has expectation dx·dy/(n−1)). The null baseline is
the same metric on the same activations with the pairing broken: image i of model A is paired with image
i+1 of model B (circularly), and within the image each position of A with the position half the image's
positions further on (raster order, circularly) of B, so both sides keep their own distribution, n and d,
and only the correspondence is lost. Shifting the positions too matters for aligned images (chest X-rays,
fundus photographs): the same place in two such images is alike, and would otherwise make the null depend
on whether a layer's positions were subsampled. ``UnpairedStream`` does this batch by batch, holding one
image's activations.
"""

from __future__ import annotations

import torch

from .errors import ActivationShapeError, SimilarityOptionError
from .moments import ArrayLike, MomentAccumulator, as_float64

# Below this many datapoints per feature, CCA-family values are noticeably biased upward (the paper's
# rule of thumb; google/svcca's tutorials ask for about 10x).
DATAPOINTS_PER_FEATURE = 10


def expected_null_sum_squared_cca(n: int, features_x: int, features_y: int) -> float:
    """E[Σρᵢ²] of the sample canonical correlations of independent Gaussian x (n, dx) and y (n, dy).

    Σρ² is Pillai's trace of the regression of one side on the other; under independence its expectation
    is dx·dy/(n−1) (for one feature each, E[r²] = 1/(n−1)). Valid for n − 1 > max(dx, dy).
    """
    if n - 1 <= max(features_x, features_y):
        raise SimilarityOptionError(
            f"the null expectation needs n - 1 > max(dx, dy); got n={n}, dx={features_x}, dy={features_y}"
        )
    return features_x * features_y / (n - 1)


def bias_note(datapoints: int, features_a: int, features_b: int) -> str | None:
    """A note when a layer pair has fewer than ``DATAPOINTS_PER_FEATURE`` datapoints per feature, else None."""
    features = max(features_a, features_b)
    if datapoints >= DATAPOINTS_PER_FEATURE * features:
        return None
    return (
        f"{datapoints} datapoints for {features} features ({datapoints / features:.1f} per feature, under "
        f"{DATAPOINTS_PER_FEATURE}): CCA-family values are biased upward; read them against the null"
    )


def unpaired(x: ArrayLike, y: ArrayLike, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, dx) and y (n, dy) with y's rows in a random order (``seed``): the pairing of independent rows.

    For activations whose rows are independent datapoints; for spatial positions of images, whose rows
    within an image are alike, use ``UnpairedStream`` (it shifts whole images).
    """
    x, y = as_float64(x, "x"), as_float64(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ActivationShapeError(
            f"x has {x.shape[0]} datapoints but y has {y.shape[0]}; they must be paired"
        )
    order = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(seed)).to(y.device)
    return x, y[order]


class UnpairedStream:
    """Accumulates the moments of model A's image i against model B's image i+1 (the last against the first),
    B's positions shifted by half their number.

    ``update(a, b)`` takes one batch of paired activations, (images, positions, features) each; ``finish()``
    closes the circle and returns the accumulator, which then holds exactly as many datapoints as the paired
    one. Fewer than two images leave nothing to unpair (``finish`` returns None).
    """

    def __init__(self, *, device: torch.device | str | None = None, fourth_moments: bool = False) -> None:
        self.moments = MomentAccumulator(device=device, fourth_moments=fourth_moments)
        self._first_b: torch.Tensor | None = None
        self._last_a: torch.Tensor | None = None
        self.images = 0

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        if a.ndim != 3 or b.ndim != 3 or a.shape[:2] != b.shape[:2]:
            raise ActivationShapeError(
                f"unpairing needs (images, positions, features) batches of the same images and positions; "
                f"got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        if a.shape[0] == 0:
            return
        b = b.roll(b.shape[1] // 2, dims=1)  # another place in the image (a no-op for one position)
        if self._first_b is None:
            self._first_b = b[0].clone()
        if self._last_a is not None:
            self.moments.update(self._last_a, b[0])
        if a.shape[0] > 1:
            self.moments.update(a[:-1].reshape(-1, a.shape[2]), b[1:].reshape(-1, b.shape[2]))
        self._last_a = a[-1].clone()
        self.images += a.shape[0]

    def finish(self) -> MomentAccumulator | None:
        """The unpaired moments (image count = datapoint groups of the paired ones), or None under 2 images."""
        if self.images < 2:
            return None
        if self._last_a is None:  # already finished
            return self.moments
        self.moments.update(self._last_a, self._first_b)
        self._first_b = self._last_a = None
        return self.moments
