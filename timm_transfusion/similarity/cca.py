"""Canonical correlations, directions and PWCCA projection weights from covariance blocks.

Follows the numerics of google/svcca (``cca_core.get_cca_similarity``): each covariance block is scaled by
its largest absolute entry, neurons whose scaled variance is below ``epsilon`` are dropped, ``epsilon·I`` is
added before inverting, and the canonical correlations are the singular values of
Σxx^-1/2 Σxy Σyy^-1/2 with symmetric inverse square roots.

Only the weighted side (the one with fewer neurons, whose variates weight PWCCA) needs its symmetric square
root, from an eigendecomposition: its canonical directions are expressed in that basis. The other side is
whitened by a Cholesky factor when it is well conditioned: any whitening W with WᵀΣW = I leaves the
singular values and the left singular vectors unchanged. Its directions in the symmetric basis are computed
only when asked for.

PWCCA weights need the inner products of the (QR-orthonormalised) canonical variates with every neuron.
With F any square root of the centred scatter (FᵀF = XcᵀXc) and U the directions, the variates' Gram is
(FU)ᵀ(FU), so a QR of the small matrix FU = QR gives R and the inner products R⁻ᵀUᵀFᵀF = QᵀF: one pass
over the data, no (n, k) QR, and no squaring of the variates' condition number. The google-svcca
convention adds the neuron means back to the variates, which appends the row √n·mᵀ to both FU and F.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch

from .covariance import Covariance
from .errors import NotEnoughDataError, SimilarityOptionError, UnderdeterminedWarning
from .threads import single_threaded

CONVENTIONS = ("centered", "google-svcca")
# The Cholesky whitening is used only when every eigenvalue is provably this far inside the numerical rank
# that the eigendecomposition keeps, so both routes give the same answer.
_CHOLESKY_MARGIN = 1e3
# Below this correlation, ρ² no longer separates the singular vectors to 1e-8 (eigh of KKᵀ works with ρ²,
# losing a factor 1/(ρᵢ + ρⱼ) of accuracy against an SVD), so the SVD of K is used instead.
_SMALLEST_CORRELATION_FOR_EIGH = 1e-4


class _Companions(NamedTuple):
    """The parts of a CCA that PWCCA does not need."""

    x_coefficients: torch.Tensor
    y_coefficients: torch.Tensor
    unweighted_directions: torch.Tensor


class _PendingCompanions(NamedTuple):
    """What the centred solver keeps so that ``_derive_companions`` can compute the companions later.

    ``right`` holds the other side's singular vectors when an SVD gave them, else None: they are then
    Kᵀ·left / ρ, exact enough because that route is taken only when every ρ is at least 1e-4.
    """

    cross: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor | None
    correlations: torch.Tensor
    weighted: _Whitening
    other: _Whitening
    other_covariance: torch.Tensor
    weighted_side: str


@dataclass(frozen=True)
class CCAResult:
    """Canonical correlation analysis of x (n, dx) against y (n, dy).

    correlations: (r,) descending canonical correlations, r the weighted side's numerical rank; when the
        other side's rank is lower, its unmatched variates have correlation 0 (and keep their PWCCA weight).
    weighted_side: "x" or "y", the side with fewer kept neurons, whose variates weight PWCCA.
    weighted_directions: (k, r) that side's canonical directions in the symmetric whitened space of its kept
        neurons (google/svcca's ``coef_x.T`` or ``coef_y.T``).
    x_kept, y_kept: (dx,), (dy,) masks of the neurons that survived the small-variance removal.
    factor: (k, k) square root of the weighted side's centred scatter (factorᵀ·factor = XcᵀXc).
    mean: (k,) means of the weighted side's kept neurons.

    ``x_directions`` / ``y_directions`` give either side's directions, ``x_coefficients`` /
    ``y_coefficients`` (kx, r) / (ky, r) the directions mapped back to the kept neurons: the i-th canonical
    variate is column i ᵀ · (centred activations / √max|Σ|), with unit variance. PWCCA needs none of them,
    so they are computed on first access.
    """

    correlations: torch.Tensor
    weighted_side: str
    weighted_directions: torch.Tensor
    x_kept: torch.Tensor
    y_kept: torch.Tensor
    factor: torch.Tensor
    mean: torch.Tensor
    n: int
    convention: str
    companions: _Companions | _PendingCompanions = field(repr=False, compare=False)

    @cached_property
    def _companions(self) -> _Companions:
        if isinstance(self.companions, _Companions):
            return self.companions
        with single_threaded(self.factor.device):
            return _derive_companions(self.companions)

    @property
    def x_directions(self) -> torch.Tensor:
        """(kx, r) canonical directions of x in the symmetric whitened space of its kept neurons."""
        return (
            self.weighted_directions if self.weighted_side == "x" else self._companions.unweighted_directions
        )

    @property
    def y_directions(self) -> torch.Tensor:
        """(ky, r) canonical directions of y in the symmetric whitened space of its kept neurons."""
        return (
            self.weighted_directions if self.weighted_side == "y" else self._companions.unweighted_directions
        )

    @property
    def x_coefficients(self) -> torch.Tensor:
        """(kx, r) x's canonical directions mapped back to its kept neurons."""
        return self._companions.x_coefficients

    @property
    def y_coefficients(self) -> torch.Tensor:
        """(ky, r) y's canonical directions mapped back to its kept neurons."""
        return self._companions.y_coefficients

    @property
    def projection_weights(self) -> torch.Tensor:
        """(r,) PWCCA weights: how much of the weighted side's neurons each canonical variate accounts for."""
        directions = self.weighted_directions[:, : self.correlations.numel()]
        return projection_weights(self.factor, directions, self.mean, self.n, self.convention)

    def mean_correlation(self) -> float:
        """Mean CCA as google/svcca computes it: see ``mean_of_correlations``."""
        return mean_of_correlations(self.correlations, self.x_kept, self.y_kept)

    def pwcca(self) -> float:
        """Projection-weighted CCA (Morcos et al. 2018): Σ weightᵢ·ρᵢ (0.0 when no neuron survived)."""
        if not self.correlations.numel():
            return 0.0
        return float((self.projection_weights * self.correlations).sum())


def mean_of_correlations(correlations: torch.Tensor, x_kept: torch.Tensor, y_kept: torch.Tensor) -> float:
    """Σρ / min(kept x, kept y): a side of lower rank than its neuron count lacks correlations, and
    google/svcca's full SVD reports those as zeros, so they count as zeros here too (0.0 when no neuron
    survived). PWCCA weights only the weighted side's directions with variance."""
    kept = min(int(x_kept.sum()), int(y_kept.sum()))
    return float(correlations.sum()) / kept if kept else 0.0


def projection_weights(
    factor: torch.Tensor, directions: torch.Tensor, mean: torch.Tensor, n: int, convention: str = "centered"
) -> torch.Tensor:
    """PWCCA weights (r,) from factor (k, k) with factorᵀfactor = XcᵀXc, directions (k, r) and means (k,).

    Equal to the QR-over-datapoints definition: weightᵢ ∝ Σⱼ |⟨pᵢ, xⱼ⟩| with pᵢ the orthonormalised variates.
    """
    check_convention(convention)
    with single_threaded(factor.device):
        return _projection_weights(factor, directions, mean, n, convention)


def _projection_weights(factor, directions, mean, n, convention):
    variates, neurons = factor @ directions, factor
    if convention == "google-svcca":
        root_n = float(n) ** 0.5
        variates = torch.cat([variates, root_n * mean[: directions.shape[1]].unsqueeze(0)])
        neurons = torch.cat([neurons, root_n * mean.unsqueeze(0)])
    basis, _ = torch.linalg.qr(variates)
    weights = (basis.T @ neurons).abs().sum(1)
    return weights / weights.sum()


def check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise SimilarityOptionError(f"unknown PWCCA convention {convention!r}; choose one of {CONVENTIONS}")


def check_epsilon(epsilon: float) -> None:
    """google/svcca's cutoff is a scaled variance: a finite number ≥ 0 (0 keeps every neuron)."""
    if not (isinstance(epsilon, numbers.Real) and math.isfinite(epsilon) and epsilon >= 0):
        raise SimilarityOptionError(f"epsilon must be a finite number ≥ 0; got {epsilon!r}")


def check_determined(n: int, features: int, allow_underdetermined: bool) -> None:
    """CCA on fewer datapoints than features finds spurious perfect correlations: refuse, or warn."""
    if n > features:
        return
    message = (
        f"{n} datapoints for {features} features: CCA needs more datapoints than features (its correlations "
        "are then spuriously close to 1); use more images or spatial positions, or pool the layer"
    )
    if not allow_underdetermined:
        raise NotEnoughDataError(message + "; pass allow_underdetermined=True to compute anyway")
    warnings.warn(message, UnderdeterminedWarning, stacklevel=3)


class _ScaledBlocks(NamedTuple):
    """Covariance blocks of the kept neurons, each side scaled by its largest absolute entry."""

    xx: torch.Tensor
    xy: torch.Tensor
    yy: torch.Tensor
    x_scale: float
    y_scale: float
    x_kept: torch.Tensor
    y_kept: torch.Tensor


def _scaled_blocks(cov: Covariance, epsilon: float) -> _ScaledBlocks:
    """google/svcca's preprocessing: scale each block, drop neurons whose scaled variance is below epsilon."""
    check_epsilon(epsilon)
    x_scale, y_scale = float(cov.xx.abs().max()), float(cov.yy.abs().max())
    x_kept, y_kept = _kept(cov.xx, x_scale, epsilon), _kept(cov.yy, y_scale, epsilon)
    return _ScaledBlocks(
        cov.xx[x_kept][:, x_kept] / x_scale,
        cov.xy[x_kept][:, y_kept] / (x_scale * y_scale) ** 0.5,
        cov.yy[y_kept][:, y_kept] / y_scale,
        x_scale,
        y_scale,
        x_kept,
        y_kept,
    )


def _kept(block: torch.Tensor, scale: float, epsilon: float) -> torch.Tensor:
    if scale == 0:
        return torch.zeros(block.shape[0], dtype=torch.bool, device=block.device)
    return block.diagonal() / scale >= epsilon


class _Whitening(NamedTuple):
    """A map W (k, r) with Wᵀ(Σ + εI)W = I on the numerical range of Σ + εI.

    ``basis`` (k, r) is set for the eigendecomposition route, where the symmetric inverse square root is
    basis·diag(λ^-1/2)·basisᵀ and the canonical directions in its space are basis·(singular vectors).
    """

    transform: torch.Tensor
    basis: torch.Tensor | None
    eigvals: torch.Tensor | None = None
    eigvecs: torch.Tensor | None = None


def _eigen_whitening(sigma: torch.Tensor, epsilon: float) -> _Whitening:
    """σ + εI = V·diag(λ)·Vᵀ, keeping the eigenvalues above the numerical rank threshold."""
    eigvals, eigvecs = torch.linalg.eigh(_regularised(sigma, epsilon))
    valid = eigvals > eigvals.max() * sigma.shape[0] * torch.finfo(sigma.dtype).eps
    basis = eigvecs[:, valid]
    return _Whitening(basis * eigvals[valid].rsqrt(), basis, eigvals, eigvecs)


def _whitening(sigma: torch.Tensor, epsilon: float) -> _Whitening:
    """The Cholesky whitening L⁻ᵀ when σ + εI is safely full rank, else the eigendecomposition route.

    λmin ≥ 1/‖L⁻¹‖²_F and λmax ≤ trace, so a small trace·‖L⁻¹‖²_F proves that the eigendecomposition would
    keep every eigenvalue; the two routes then agree to rounding error.
    """
    regularised = _regularised(sigma, epsilon)
    lower, info = torch.linalg.cholesky_ex(regularised)
    if int(info) == 0:
        eye = torch.eye(sigma.shape[0], dtype=sigma.dtype, device=sigma.device)
        inverse = torch.linalg.solve_triangular(lower, eye, upper=False)
        condition_bound = float(regularised.diagonal().sum() * inverse.square().sum())
        if condition_bound * sigma.shape[0] * torch.finfo(sigma.dtype).eps * _CHOLESKY_MARGIN < 1:
            return _Whitening(inverse.T, None)
    return _eigen_whitening(sigma, epsilon)


def _regularised(sigma: torch.Tensor, epsilon: float) -> torch.Tensor:
    if not epsilon:
        return sigma
    return sigma + epsilon * torch.eye(sigma.shape[0], dtype=sigma.dtype, device=sigma.device)


def canonical_correlations(
    cov: Covariance, *, epsilon: float = 0.0, allow_underdetermined: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(r,) descending canonical correlations and the kept masks of x and y: the cheapest route (no
    directions, no PWCCA weights). r is the smaller numerical rank of the two kept sides."""
    check_determined(cov.n, max(cov.xx.shape[0], cov.yy.shape[0]), allow_underdetermined)
    blocks = _scaled_blocks(cov, epsilon)
    if not blocks.x_kept.any() or not blocks.y_kept.any():
        return torch.zeros(0, dtype=torch.float64, device=cov.mean_x.device), blocks.x_kept, blocks.y_kept
    with single_threaded(cov.xx.device):
        x_white, y_white = _whitening(blocks.xx, epsilon), _whitening(blocks.yy, epsilon)
        cross = x_white.transform.T @ blocks.xy @ y_white.transform
        return torch.linalg.svdvals(cross).clamp(max=1.0), blocks.x_kept, blocks.y_kept


def canonical_correlation_analysis(
    cov: Covariance,
    *,
    epsilon: float = 0.0,
    convention: str = "centered",
    allow_underdetermined: bool = False,
) -> CCAResult:
    """CCA of the covariance blocks ``cov`` with google/svcca's epsilon semantics.

    ``convention="centered"`` runs in torch on the statistics' device and keeps the numerical rank only
    (directions of a singular covariance carry no correlation). ``"google-svcca"`` follows the reference's
    NumPy operations on the CPU (pinv, eigh square root, full SVD) so that its SVD signs, on which its
    PWCCA depends, agree with the reference's.
    """
    check_convention(convention)
    check_determined(cov.n, max(cov.xx.shape[0], cov.yy.shape[0]), allow_underdetermined)
    blocks = _scaled_blocks(cov, epsilon)
    if not blocks.x_kept.any() or not blocks.y_kept.any():
        return _empty_result(cov, blocks, convention)
    weighted_side = "x" if int(blocks.x_kept.sum()) <= int(blocks.y_kept.sum()) else "y"
    solve = _solve_google if convention == "google-svcca" else _solve_centered
    with single_threaded(cov.xx.device):
        return solve(cov, blocks, weighted_side, epsilon)


def _solve_centered(cov: Covariance, blocks: _ScaledBlocks, weighted_side: str, epsilon: float) -> CCAResult:
    """The weighted side a by its eigendecomposition, the other side b by the cheapest exact whitening.

    The correlations and a's singular vectors come from the eigendecomposition of KKᵀ (K the whitened
    cross-covariance, ra × ra), half the cost of an SVD of K, and b's singular vectors wait until asked
    for. When some correlation is tiny (or zero, as for a b of lower rank than a, whose unmatched
    variates of a get correlation 0) the full SVD of K is used instead.
    """
    if weighted_side == "x":
        aa, ab, bb = blocks.xx, blocks.xy, blocks.yy
        scale, mean = blocks.x_scale, cov.mean_x[blocks.x_kept]
    else:
        aa, ab, bb = blocks.yy, blocks.xy.T, blocks.xx
        scale, mean = blocks.y_scale, cov.mean_y[blocks.y_kept]
    a_white, b_white = _eigen_whitening(aa, epsilon), _whitening(bb, epsilon)
    cross = a_white.transform.T @ ab @ b_white.transform
    squared, left = torch.linalg.eigh(cross @ cross.T)
    correlations, left, right = squared.flip(0).clamp(0.0, 1.0).sqrt(), left.flip(1), None
    unmatched = cross.shape[1] < cross.shape[0]  # b of lower rank: some of a's variates have correlation 0
    if unmatched or (correlations.numel() and float(correlations[-1]) < _SMALLEST_CORRELATION_FOR_EIGH):
        left, singular, right_t = torch.linalg.svd(cross, full_matrices=True)
        correlations = torch.zeros_like(correlations)
        correlations[: singular.numel()] = singular.clamp(max=1.0)
        right = right_t.T[:, : singular.numel()]
    variances = (a_white.eigvals - epsilon).clamp(min=0) * scale * (cov.n - 1)
    return CCAResult(
        correlations=correlations,
        weighted_side=weighted_side,
        weighted_directions=a_white.basis @ left,
        x_kept=blocks.x_kept,
        y_kept=blocks.y_kept,
        factor=variances.sqrt().unsqueeze(1) * a_white.eigvecs.T,
        mean=mean,
        n=cov.n,
        convention="centered",
        companions=_PendingCompanions(
            cross, left, right, correlations, a_white, b_white, _regularised(bb, epsilon), weighted_side
        ),
    )


def _derive_companions(pending: _PendingCompanions) -> _Companions:
    """The other side's singular vectors, both sides' coefficients and the other side's directions."""
    right = pending.right
    if right is None:
        right = (pending.cross.T @ pending.left) / pending.correlations
    weighted_coefficients = pending.weighted.transform @ pending.left
    other_coefficients = pending.other.transform @ right
    if pending.other.basis is not None:
        other_directions = pending.other.basis @ right
    else:  # Cholesky whitening: the symmetric square root maps the coefficients to the directions
        eigvals, eigvecs = torch.linalg.eigh(pending.other_covariance)
        other_directions = (eigvecs * eigvals.clamp(min=0).sqrt()) @ (eigvecs.T @ other_coefficients)
    if pending.weighted_side == "x":
        return _Companions(weighted_coefficients, other_coefficients, other_directions)
    return _Companions(other_coefficients, weighted_coefficients, other_directions)


def _solve_google(cov: Covariance, blocks: _ScaledBlocks, weighted_side: str, epsilon: float) -> CCAResult:
    device = cov.xx.device
    xx, xy, yy = (block.cpu().numpy() for block in (blocks.xx, blocks.xy, blocks.yy))
    x_white = _google_inverse_sqrt(xx + epsilon * np.eye(xx.shape[0]))
    y_white = _google_inverse_sqrt(yy + epsilon * np.eye(yy.shape[0]))
    left, singular, right_t = np.linalg.svd(np.dot(x_white, np.dot(xy, y_white)))
    rank = singular.size
    if weighted_side == "x":
        weighted, other, aa = left, right_t.T, xx
        scale, mean = blocks.x_scale, cov.mean_x[blocks.x_kept]
    else:
        weighted, other, aa = right_t.T, left, yy
        scale, mean = blocks.y_scale, cov.mean_y[blocks.y_kept]
    eigvals, eigvecs = np.linalg.eigh(aa + epsilon * np.eye(aa.shape[0]))
    variances = np.clip(eigvals - epsilon, 0, None) * scale * (cov.n - 1)
    arrays = (
        np.abs(singular),
        weighted,
        np.sqrt(variances)[:, None] * eigvecs.T,
        x_white @ left[:, :rank],
        y_white @ right_t.T[:, :rank],
        other,
    )
    correlations, directions, factor, *rest = (
        torch.from_numpy(np.ascontiguousarray(array)).to(device) for array in arrays
    )
    return CCAResult(
        correlations=correlations,
        weighted_side=weighted_side,
        weighted_directions=directions,
        x_kept=blocks.x_kept,
        y_kept=blocks.y_kept,
        factor=factor,
        mean=mean,
        n=cov.n,
        convention="google-svcca",
        companions=_Companions(*rest),
    )


def _google_inverse_sqrt(sigma: np.ndarray) -> np.ndarray:
    """google/svcca's route: pinv, then the square root through eigh (negative round-off clipped to 0)."""
    eigvals, eigvecs = np.linalg.eigh(np.linalg.pinv(sigma))
    return np.dot(eigvecs, np.dot(np.diag(np.sqrt(np.clip(eigvals, 0, None))), eigvecs.T))


def _empty_result(cov: Covariance, blocks: _ScaledBlocks, convention: str) -> CCAResult:
    empty = torch.zeros(0, dtype=torch.float64, device=cov.mean_x.device)
    square = empty.reshape(0, 0)
    return CCAResult(
        correlations=empty,
        weighted_side="x",
        weighted_directions=square,
        x_kept=blocks.x_kept,
        y_kept=blocks.y_kept,
        factor=square,
        mean=empty,
        n=cov.n,
        convention=convention,
        companions=_Companions(square, square, square),
    )
