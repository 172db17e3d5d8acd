"""Similarity metrics for activations shaped (datapoints, features): thin wrappers over MomentAccumulator.

Inputs may be NumPy arrays or torch tensors on any device; the work runs in float64 on that device.
"""

from __future__ import annotations

from .cca import (
    CCAResult,
    canonical_correlation_analysis,
)
from .moments import ArrayLike, MomentAccumulator
from .scores import (
    linear_cka_from_moments,
    mean_cca_from_moments,
    pwcca_from_moments,
    svcca_from_moments,
)


def _moments(x: ArrayLike, y: ArrayLike, fourth_moments: bool = False) -> MomentAccumulator:
    return MomentAccumulator(fourth_moments=fourth_moments).update(x, y)


def mean_cca(
    x: ArrayLike, y: ArrayLike, epsilon: float = 0.0, *, allow_underdetermined: bool = False
) -> float:
    """Mean canonical correlation of x (n, dx) and y (n, dy); equals np.mean of google/svcca's cca_coef1."""
    return mean_cca_from_moments(_moments(x, y), epsilon=epsilon, allow_underdetermined=allow_underdetermined)


def pwcca(
    x: ArrayLike,
    y: ArrayLike,
    epsilon: float = 0.0,
    convention: str = "centered",
    *,
    allow_underdetermined: bool = False,
) -> float:
    """Projection-weighted CCA of x (n, dx) and y (n, dy), weighted by the side with fewer neurons.

    ``convention="centered"`` (default) weights with the centred canonical variates (sign-invariant);
    ``"google-svcca"`` reproduces ``pwcca.compute_pwcca``'s value (mean added back to the variates).
    """
    return pwcca_from_moments(
        _moments(x, y), epsilon=epsilon, convention=convention, allow_underdetermined=allow_underdetermined
    )


def svcca(
    x: ArrayLike,
    y: ArrayLike,
    threshold: float = 0.99,
    dims: int | None = None,
    *,
    epsilon: float = 0.0,
    allow_underdetermined: bool = False,
) -> float:
    """SVCCA: keep each side's top principal directions (``dims`` of them, or enough to explain ``threshold``
    of the variance), then the mean canonical correlation of the reduced x (n, ≤dx) and y (n, ≤dy)."""
    return svcca_from_moments(
        _moments(x, y),
        threshold=threshold,
        dims=dims,
        epsilon=epsilon,
        allow_underdetermined=allow_underdetermined,
    )


def linear_cka(x: ArrayLike, y: ArrayLike, debiased: bool = False) -> float:
    """Linear CKA (Kornblith et al. 2019) of x (n, dx) and y (n, dy); ``debiased`` uses the unbiased HSIC."""
    return linear_cka_from_moments(_moments(x, y, fourth_moments=debiased), debiased=debiased)


def cca(
    x: ArrayLike,
    y: ArrayLike,
    epsilon: float = 0.0,
    *,
    convention: str = "centered",
    allow_underdetermined: bool = False,
) -> CCAResult:
    """Canonical correlations, directions and PWCCA weights of x (n, dx) and y (n, dy)."""
    return canonical_correlation_analysis(
        _moments(x, y).covariance(),
        epsilon=epsilon,
        convention=convention,
        allow_underdetermined=allow_underdetermined,
    )
