"""Canonical correlations, directions and PWCCA projection weights from covariance blocks.

Follows the numerics of google/svcca (``cca_core.get_cca_similarity``): each covariance block is scaled by
its largest absolute entry, neurons whose scaled variance is below ``epsilon`` are dropped, ``epsilon·I`` is
added before inverting, and the canonical correlations are the singular values of
Σxx^-1/2 Σxy Σyy^-1/2 with symmetric inverse square roots.

PWCCA weights need the inner products of the (QR-orthonormalised) canonical variates with every neuron.
With F any square root of the centred scatter (FᵀF = XcᵀXc) and U the directions, the variates' Gram is
(FU)ᵀ(FU), so a QR of the small matrix FU = QR gives R and the inner products R⁻ᵀUᵀFᵀF = QᵀF: one pass
over the data, no (n, k) QR, and no squaring of the variates' condition number. The google-svcca
convention adds the neuron means back to the variates, which appends the row √n·mᵀ to both FU and F.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .moments import Covariance
from .threads import single_threaded

CONVENTIONS = ("centered", "google-svcca")


@dataclass(frozen=True)
class CCAResult:
    """Canonical correlation analysis of x (n, dx) against y (n, dy).

    correlations: (r,) descending canonical correlations.
    x_directions, y_directions: (kx, r), (ky, r) canonical directions in the whitened space of the kept
        neurons (google/svcca's ``coef_x.T`` and ``coef_y.T``).
    x_coefficients, y_coefficients: (kx, r), (ky, r) the same directions mapped back to the kept neurons:
        the i-th canonical variate is column i ᵀ · (centred activations / √max|Σ|), with unit variance.
    x_kept, y_kept: (dx,), (dy,) masks of the neurons that survived the small-variance removal.
    weighted_side: "x" or "y", the side with fewer kept neurons, whose variates weight PWCCA.
    factor: (k, k) square root of the weighted side's centred scatter (factorᵀ·factor = XcᵀXc).
    mean: (k,) means of the weighted side's kept neurons.
    """

    correlations: torch.Tensor
    x_directions: torch.Tensor
    y_directions: torch.Tensor
    x_coefficients: torch.Tensor
    y_coefficients: torch.Tensor
    x_kept: torch.Tensor
    y_kept: torch.Tensor
    weighted_side: str
    factor: torch.Tensor
    mean: torch.Tensor
    n: int
    convention: str

    @property
    def projection_weights(self) -> torch.Tensor:
        """(r,) PWCCA weights: how much of the weighted side's neurons each canonical variate accounts for."""
        directions = self.x_directions if self.weighted_side == "x" else self.y_directions
        return projection_weights(
            self.factor, directions[:, : self.correlations.numel()], self.mean, self.n, self.convention
        )

    def mean_correlation(self) -> float:
        """Mean CCA: the average canonical correlation (0.0 when no neuron survived)."""
        return float(self.correlations.mean()) if self.correlations.numel() else 0.0

    def pwcca(self) -> float:
        """Projection-weighted CCA (Morcos et al. 2018): Σ weightᵢ·ρᵢ (0.0 when no neuron survived)."""
        if not self.correlations.numel():
            return 0.0
        return float((self.projection_weights * self.correlations).sum())


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
        raise ValueError(f"unknown PWCCA convention {convention!r}; choose one of {CONVENTIONS}")


def check_determined(n: int, features: int, allow_underdetermined: bool) -> None:
    """CCA on fewer datapoints than features finds spurious perfect correlations: refuse, or warn."""
    if n > features:
        return
    message = (
        f"{n} datapoints for {features} features: CCA needs more datapoints than features (its correlations "
        "are then spuriously close to 1); use more images or spatial positions, or pool the layer"
    )
    if not allow_underdetermined:
        raise ValueError(message + "; pass allow_underdetermined=True to compute anyway")
    warnings.warn(message, stacklevel=3)


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
    with single_threaded(cov.xx.device):
        return _canonical_correlation_analysis(cov, epsilon, convention)


def _canonical_correlation_analysis(cov: Covariance, epsilon: float, convention: str) -> CCAResult:
    xmax, ymax = float(cov.xx.abs().max()), float(cov.yy.abs().max())
    x_kept = (
        cov.xx.diagonal() / xmax >= epsilon if xmax > 0 else torch.zeros_like(cov.mean_x, dtype=torch.bool)
    )
    y_kept = (
        cov.yy.diagonal() / ymax >= epsilon if ymax > 0 else torch.zeros_like(cov.mean_y, dtype=torch.bool)
    )
    if not x_kept.any() or not y_kept.any():
        return _empty_result(cov, x_kept, y_kept, convention)
    xx = cov.xx[x_kept][:, x_kept] / xmax
    yy = cov.yy[y_kept][:, y_kept] / ymax
    xy = cov.xy[x_kept][:, y_kept] / (xmax * ymax) ** 0.5
    solve = _solve_google if convention == "google-svcca" else _solve_centered
    correlations, x_dirs, y_dirs, x_coef, y_coef, x_eig, y_eig = solve(xx, xy, yy, epsilon)
    weighted_side = "x" if int(x_kept.sum()) <= int(y_kept.sum()) else "y"
    eigvals, eigvecs, scale, kept, mean = (
        (*x_eig, xmax, x_kept, cov.mean_x) if weighted_side == "x" else (*y_eig, ymax, y_kept, cov.mean_y)
    )
    variances = (eigvals - epsilon).clamp(min=0) * scale * (cov.n - 1)
    factor = variances.sqrt().unsqueeze(1) * eigvecs.T
    return CCAResult(
        correlations,
        x_dirs,
        y_dirs,
        x_coef,
        y_coef,
        x_kept,
        y_kept,
        weighted_side,
        factor,
        mean[kept],
        cov.n,
        convention,
    )


def _whiten(sigma: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """σ + εI = V·diag(λ)·Vᵀ -> (λ, V, validity mask of the numerical range)."""
    eye = torch.eye(sigma.shape[0], dtype=sigma.dtype, device=sigma.device)
    eigvals, eigvecs = torch.linalg.eigh(sigma + epsilon * eye)
    valid = eigvals > eigvals.max() * sigma.shape[0] * torch.finfo(sigma.dtype).eps
    return eigvals, eigvecs, valid


def _solve_centered(xx, xy, yy, epsilon):
    x_vals, x_vecs, x_valid = _whiten(xx, epsilon)
    y_vals, y_vecs, y_valid = _whiten(yy, epsilon)
    x_range, y_range = x_vecs[:, x_valid], y_vecs[:, y_valid]
    x_scaled = x_range * x_vals[x_valid].rsqrt()
    y_scaled = y_range * y_vals[y_valid].rsqrt()
    left, correlations, right_t = torch.linalg.svd(x_scaled.T @ xy @ y_scaled, full_matrices=False)
    # The symmetric inverse square root is V·diag(λ^-1/2)·Vᵀ, so its singular vectors are V·(these).
    return (
        correlations.clamp(max=1.0),
        x_range @ left,
        y_range @ right_t.T,
        x_scaled @ left,
        y_scaled @ right_t.T,
        (x_vals, x_vecs),
        (y_vals, y_vecs),
    )


def _solve_google(xx, xy, yy, epsilon):
    device = xx.device
    xx, xy, yy = (block.cpu().numpy() for block in (xx, xy, yy))
    x_white = _google_inverse_sqrt(xx + epsilon * np.eye(xx.shape[0]))
    y_white = _google_inverse_sqrt(yy + epsilon * np.eye(yy.shape[0]))
    left, singular, right = np.linalg.svd(np.dot(x_white, np.dot(xy, y_white)))
    x_eig = np.linalg.eigh(xx + epsilon * np.eye(xx.shape[0]))
    y_eig = np.linalg.eigh(yy + epsilon * np.eye(yy.shape[0]))
    rank = singular.size
    arrays = (
        np.abs(singular),
        left,
        right.T,
        x_white @ left[:, :rank],
        y_white @ right.T[:, :rank],
        *x_eig,
        *y_eig,
    )
    correlations, x_dirs, y_dirs, x_coef, y_coef, xv, xq, yv, yq = (
        torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays
    )
    return correlations, x_dirs, y_dirs, x_coef, y_coef, (xv, xq), (yv, yq)


def _google_inverse_sqrt(sigma: np.ndarray) -> np.ndarray:
    """google/svcca's route: pinv, then the square root through eigh (negative round-off clipped to 0)."""
    eigvals, eigvecs = np.linalg.eigh(np.linalg.pinv(sigma))
    return np.dot(eigvecs, np.dot(np.diag(np.sqrt(np.clip(eigvals, 0, None))), eigvecs.T))


def _empty_result(cov: Covariance, x_kept, y_kept, convention: str) -> CCAResult:
    empty = torch.zeros(0, dtype=torch.float64, device=cov.mean_x.device)
    square = empty.reshape(0, 0)
    return CCAResult(
        empty, square, square, square, square, x_kept, y_kept, "x", square, empty, cov.n, convention
    )
