"""Similarity metrics for activations shaped (datapoints, features): thin wrappers over MomentAccumulator.

Inputs may be NumPy arrays or torch tensors on any device; the work runs in float64 on that device.
"""

from __future__ import annotations

import torch

from .cca import (
    CCAResult,
    canonical_correlation_analysis,
    canonical_correlations,
    check_determined,
    mean_of_correlations,
)
from .errors import NotEnoughDataError, SimilarityOptionError
from .moments import ArrayLike, Covariance, MomentAccumulator
from .threads import single_threaded


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


def mean_cca_from_moments(
    moments: MomentAccumulator, *, epsilon: float = 0.0, allow_underdetermined: bool = False
) -> float:
    correlations = canonical_correlations(
        moments.covariance(), epsilon=epsilon, allow_underdetermined=allow_underdetermined
    )
    return mean_of_correlations(*correlations)


def pwcca_from_moments(
    moments: MomentAccumulator,
    *,
    epsilon: float = 0.0,
    convention: str = "centered",
    allow_underdetermined: bool = False,
) -> float:
    result = canonical_correlation_analysis(
        moments.covariance(),
        epsilon=epsilon,
        convention=convention,
        allow_underdetermined=allow_underdetermined,
    )
    return result.pwcca()


def svcca_from_moments(
    moments: MomentAccumulator,
    *,
    threshold: float = 0.99,
    dims: int | None = None,
    epsilon: float = 0.0,
    allow_underdetermined: bool = False,
) -> float:
    if not 0.0 < threshold <= 1.0:
        raise SimilarityOptionError(f"threshold must be in (0, 1]; got {threshold}")
    cov = moments.covariance()
    check_determined(cov.n, max(cov.xx.shape[0], cov.yy.shape[0]), allow_underdetermined)
    with single_threaded(cov.xx.device):
        x_variances, x_basis = _principal_directions(cov.xx, threshold, dims)
        y_variances, y_basis = _principal_directions(cov.yy, threshold, dims)
    # In its principal basis a side's covariance is exactly diagonal; writing it so (rather than
    # basisᵀΣbasis, whose null directions hold ±1e-17 of rounding) makes which directions epsilon keeps,
    # and so the mean's divisor, independent of rounding.
    reduced = Covariance(
        cov.n,
        x_basis.T @ cov.mean_x,
        y_basis.T @ cov.mean_y,
        torch.diag(x_variances),
        x_basis.T @ cov.xy @ y_basis,
        torch.diag(y_variances),
    )
    return mean_of_correlations(*canonical_correlations(reduced, epsilon=epsilon, allow_underdetermined=True))


def _principal_directions(
    sigma: torch.Tensor, threshold: float, dims: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(k,) top eigenvalues (clamped at 0) and (d, k) eigenvectors of σ: ``dims`` of them, or the fewest
    that explain ``threshold`` of it."""
    eigvals, eigvecs = torch.linalg.eigh(sigma)
    eigvals, eigvecs = eigvals.flip(0).clamp(min=0), eigvecs.flip(1)
    if dims is not None:
        if not 1 <= dims <= sigma.shape[0]:
            raise SimilarityOptionError(
                f"dims must be between 1 and the number of features ({sigma.shape[0]}); got {dims}"
            )
        return eigvals[:dims], eigvecs[:, :dims]
    explained = eigvals.cumsum(0) / eigvals.sum()
    keep = min(int((explained < threshold - 1e-12).sum()) + 1, sigma.shape[0])
    return eigvals[:keep], eigvecs[:, :keep]


def linear_cka_from_moments(moments: MomentAccumulator, *, debiased: bool = False) -> float:
    """CKA = ‖XcᵀYc‖²_F / (‖XcᵀXc‖_F‖YcᵀYc‖_F); debiased: Kornblith et al.'s unbiased-HSIC version."""
    if debiased and not moments.fourth_moments:
        raise SimilarityOptionError(
            "debiased CKA needs the fourth-order sums: use MomentAccumulator(fourth_moments=True)"
        )
    n, minimum = moments.n, 4 if debiased else 2
    if n < minimum:
        raise NotEnoughDataError(f"{'debiased ' * debiased}CKA needs at least {minimum} datapoints; have {n}")
    sxx, syy, sxy = moments.scatter_xx, moments.scatter_yy, moments.scatter_xy
    trace_x, trace_y = sxx.diagonal().sum(), syy.diagonal().sum()
    if trace_x == 0 or trace_y == 0:
        return 0.0  # a side without variance (dead or constant layer) shares nothing with the other
    if not debiased:
        denominator = torch.linalg.matrix_norm(sxx) * torch.linalg.matrix_norm(syy)
        return float((sxy * sxy).sum() / denominator)
    q = moments.quartic  # Σ‖x̃ᵢ‖⁴, Σ‖ỹᵢ‖⁴, Σ‖x̃ᵢ‖²‖ỹᵢ‖² of the centred rows
    rows_x, rows_y, rows_xy = q["x4"][0], q["y4"][0], q["x2y2"][0]

    def hsic(
        cross_sq: torch.Tensor, row_products: torch.Tensor, trace_a: torch.Tensor, trace_b: torch.Tensor
    ):
        return cross_sq - n / (n - 2) * row_products + trace_a * trace_b / ((n - 1) * (n - 2))

    xy = hsic((sxy * sxy).sum(), rows_xy, trace_x, trace_y)
    xx = hsic((sxx * sxx).sum(), rows_x, trace_x, trace_x)
    yy = hsic((syy * syy).sum(), rows_y, trace_y, trace_y)
    return float(xy / (xx * yy).sqrt())
