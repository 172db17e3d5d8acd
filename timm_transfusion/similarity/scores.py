"""Similarity scores from accumulated moments (mean CCA, PWCCA, SVCCA, linear CKA): the numerics behind both
``MomentAccumulator``'s methods and the array functions in :mod:`.metrics`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .cca import (
    canonical_correlation_analysis,
    canonical_correlations,
    check_determined,
    mean_of_correlations,
)
from .covariance import Covariance
from .errors import NotEnoughDataError, SimilarityOptionError
from .threads import single_threaded

if TYPE_CHECKING:
    from .moments import MomentAccumulator


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
