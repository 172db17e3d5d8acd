"""Streaming sufficient statistics of two paired activation sets, mergeable across batches and processes.

Everything CCA, SVCCA, PWCCA and linear CKA need is a function of n, the means, and the centred scatter
matrices XcᵀXc, YcᵀYc, XcᵀYc (plus a few fourth-order sums for debiased CKA). Batches are combined with
Chan et al.'s pairwise update, which keeps the scatter centred and avoids the cancellation of raw sums
when the activations have large means. Memory is O((dx + dy)²) whatever the number of datapoints.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from scipy.linalg.blas import dgemm, dsyrk

from . import scores
from .cca import CCAResult, canonical_correlation_analysis
from .covariance import Covariance
from .errors import ActivationShapeError, NonFiniteActivationError, NotEnoughDataError, SimilarityOptionError

ArrayLike = torch.Tensor | np.ndarray


def as_float64(values: ArrayLike, name: str, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(datapoints, features) NumPy array or tensor -> float64 tensor on ``device`` (default: its own)."""
    if not isinstance(values, (torch.Tensor, np.ndarray)):
        values = np.asarray(values, dtype=np.float64)  # nested lists: torch would read them as float32
    if any(stride < 0 for stride in getattr(values, "strides", ())):
        values = np.ascontiguousarray(values)  # torch cannot view negative strides (e.g. x[::-1])
    tensor = torch.as_tensor(values).detach().resolve_neg()
    if tensor.ndim != 2 or tensor.shape[1] == 0:
        raise ActivationShapeError(
            f"{name} must be 2-D (datapoints, features) with at least one feature; "
            f"got shape {tuple(tensor.shape)}"
        )
    return tensor.to(device=device if device is not None else tensor.device, dtype=torch.float64)


def _check_finite(batch: MomentAccumulator, x: torch.Tensor, y: torch.Tensor) -> None:
    """NaN or inf anywhere in a batch reaches its means or variances, so checking those (O(d)) suffices."""
    summary = torch.cat(
        [batch.mean_x, batch.mean_y, batch.scatter_xx.diagonal(), batch.scatter_yy.diagonal()]
    )
    if torch.isfinite(summary).all():
        return
    for name, tensor in (("x", x), ("y", y)):
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise NonFiniteActivationError(
                f"{name} holds {bad} NaN or inf values; similarity needs finite activations"
            )
    raise NonFiniteActivationError(
        "the batch's squared activations overflow float64; rescale the activations"
    )


class MomentAccumulator:
    """n, means and centred scatter of paired activations x (n, dx) and y (n, dy), in float64.

    Statistics live on the device of the first batch (or ``device``). ``update`` adds a batch, ``+`` merges
    two accumulators, ``all_reduce`` merges across the processes of a ``torch.distributed`` group.
    ``fourth_moments=True`` also keeps the sums debiased CKA needs (one extra pass over each batch).
    """

    def __init__(self, *, device: torch.device | str | None = None, fourth_moments: bool = False) -> None:
        self.device = torch.device(device) if device is not None else None
        self.fourth_moments = fourth_moments
        self.n = 0
        self.mean_x: torch.Tensor | None = None
        self.mean_y: torch.Tensor | None = None
        self.scatter_xx: torch.Tensor | None = None
        self.scatter_yy: torch.Tensor | None = None
        self.scatter_xy: torch.Tensor | None = None
        # Fourth-order sums of the centred rows x̃, ỹ for debiased CKA (see ``_shift_quartic``).
        self.quartic: dict[str, torch.Tensor] = {}

    @property
    def features(self) -> tuple[int, int]:
        if self.mean_x is None:
            raise NotEnoughDataError("the accumulator is empty; call update(x_batch, y_batch) first")
        return self.mean_x.numel(), self.mean_y.numel()

    def update(self, x: ArrayLike, y: ArrayLike) -> MomentAccumulator:
        """Add a batch: x (batch, dx) and y (batch, dy) with the same datapoints in the same order."""
        x = as_float64(x, "x", device=self.device)
        y = as_float64(y, "y", device=x.device)
        if x.shape[0] != y.shape[0]:
            raise ActivationShapeError(
                f"x has {x.shape[0]} datapoints but y has {y.shape[0]}; they must be paired"
            )
        if x.shape[0] == 0:
            return self
        if self.mean_x is not None and (x.shape[1], y.shape[1]) != self.features:
            raise ActivationShapeError(
                f"batch has features {(x.shape[1], y.shape[1])}, the accumulator {self.features}"
            )
        batch = _batch_moments(x, y, self.fourth_moments)
        _check_finite(batch, x, y)
        self._merge(batch)
        return self

    def __add__(self, other: MomentAccumulator) -> MomentAccumulator:
        if self.fourth_moments != other.fourth_moments:
            raise SimilarityOptionError("cannot merge an accumulator with fourth moments and one without")
        merged = MomentAccumulator(device=self.device, fourth_moments=self.fourth_moments)
        for source in (self, other):
            if source.n:
                merged._merge(source)
        return merged

    def _merge(self, other: MomentAccumulator) -> None:
        if self.n == 0:
            self.n = other.n
            self.mean_x, self.mean_y = other.mean_x.clone(), other.mean_y.clone()
            self.scatter_xx, self.scatter_yy = other.scatter_xx.clone(), other.scatter_yy.clone()
            self.scatter_xy = other.scatter_xy.clone()
            self.quartic = {key: value.clone() for key, value in other.quartic.items()}
            self.device = self.mean_x.device
            return
        if other.features != self.features:
            raise ActivationShapeError(
                f"cannot merge accumulators with features {self.features} and {other.features}"
            )
        n = self.n + other.n
        dx = other.mean_x.to(self.device) - self.mean_x
        dy = other.mean_y.to(self.device) - self.mean_y
        weight = self.n * other.n / n
        if self.quartic:
            # Both sides' sums move to the merged means before the scatter they need is updated.
            mine = _shift_quartic(self, -dx * (other.n / n), -dy * (other.n / n))
            theirs = _shift_quartic(other, dx * (self.n / n), dy * (self.n / n))
            self.quartic = {key: mine[key] + theirs[key] for key in mine}
        self.scatter_xx += other.scatter_xx.to(self.device) + weight * torch.outer(dx, dx)
        self.scatter_yy += other.scatter_yy.to(self.device) + weight * torch.outer(dy, dy)
        self.scatter_xy += other.scatter_xy.to(self.device) + weight * torch.outer(dx, dy)
        self.mean_x += dx * (other.n / n)
        self.mean_y += dy * (other.n / n)
        self.n = n

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> MomentAccumulator:
        """Merge the statistics of every process in ``group`` in place (every rank ends with the total).

        A rank that saw no data first learns the feature sizes from the others. Then the counts and sums
        give the global means, and each rank re-centres its scatter on them, so the sum stays as
        well-conditioned as a single-process accumulation.
        """
        self._size_for_all_reduce(group)
        dx, dy = self.features
        n_local = torch.tensor([float(self.n)], dtype=torch.float64, device=self.device)
        sums = torch.cat([n_local, self.mean_x * self.n, self.mean_y * self.n])
        dist.all_reduce(sums, group=group)
        n = int(round(sums[0].item()))
        mean_x, mean_y = sums[1 : 1 + dx] / n, sums[1 + dx :] / n
        shift_x, shift_y = self.mean_x - mean_x, self.mean_y - mean_y
        blocks = [
            self.scatter_xx + self.n * torch.outer(shift_x, shift_x),
            self.scatter_yy + self.n * torch.outer(shift_y, shift_y),
            self.scatter_xy + self.n * torch.outer(shift_x, shift_y),
        ]
        if self.quartic:
            self.quartic = _shift_quartic(self, shift_x, shift_y)
        blocks += [self.quartic[key] for key in sorted(self.quartic)]
        flat = torch.cat([block.reshape(-1) for block in blocks])
        dist.all_reduce(flat, group=group)
        pieces = iter(torch.split(flat, [block.numel() for block in blocks]))
        self.scatter_xx, self.scatter_yy, self.scatter_xy = (next(pieces).view_as(b) for b in blocks[:3])
        self.quartic = {key: next(pieces).view_as(self.quartic[key]) for key in sorted(self.quartic)}
        self.n, self.mean_x, self.mean_y = n, mean_x, mean_y
        return self

    def _size_for_all_reduce(self, group: dist.ProcessGroup | None) -> None:
        """Check that every process holds the same kind of statistics (feature sizes of the processes that
        saw data, ``fourth_moments``), and give one that saw no data the others' sizes, as zero statistics.

        One MAX reduction of (sizes, -sizes) yields both the largest and the smallest value, so every
        process sees the same disagreement and raises, instead of summing blocks of different shapes.
        """
        if self.device is None:
            nccl = dist.get_backend(group) == "nccl"
            self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        sizes = (*self.features, *(-d for d in self.features)) if self.n else (0, 0, -math.inf, -math.inf)
        fourth = float(self.fourth_moments)
        local = torch.tensor([*sizes, fourth, -fourth], dtype=torch.float64, device=self.device)
        dist.all_reduce(local, op=dist.ReduceOp.MAX, group=group)
        largest, smallest = local[[0, 1, 4]].tolist(), (-local[[2, 3, 5]]).tolist()
        dx, dy = int(largest[0]), int(largest[1])
        if dx == 0:
            raise NotEnoughDataError(
                "no process saw any data; call update(x_batch, y_batch) before all_reduce()"
            )
        if largest != smallest:
            raise ActivationShapeError(
                "processes hold different statistics: feature sizes (x, y) from "
                f"({int(smallest[0])}, {int(smallest[1])}) to ({dx}, {dy}), fourth_moments "
                f"{sorted({bool(smallest[2]), bool(largest[2])})}; every process must capture the same layers "
                "with the same MomentAccumulator settings"
            )
        if self.n:
            return
        zeros = torch.zeros
        self.mean_x, self.mean_y = (
            zeros(dx, dtype=torch.float64, device=self.device),
            zeros(dy, dtype=torch.float64, device=self.device),
        )
        self.scatter_xx = zeros(dx, dx, dtype=torch.float64, device=self.device)
        self.scatter_yy = zeros(dy, dy, dtype=torch.float64, device=self.device)
        self.scatter_xy = zeros(dx, dy, dtype=torch.float64, device=self.device)
        if self.fourth_moments:
            shapes = {"x4": 1, "y4": 1, "x2y2": 1, "x2x": dx, "y2x": dx, "x2y": dy, "y2y": dy}
            self.quartic = {
                key: zeros(size, dtype=torch.float64, device=self.device) for key, size in shapes.items()
            }

    def covariance(self) -> Covariance:
        """Sample covariance (ddof=1), as ``np.cov`` would give on all the data seen so far."""
        if self.n < 2:
            raise NotEnoughDataError(f"need at least 2 datapoints for a covariance; have {self.n}")
        scale = 1.0 / (self.n - 1)
        return Covariance(
            self.n,
            self.mean_x,
            self.mean_y,
            self.scatter_xx * scale,
            self.scatter_xy * scale,
            self.scatter_yy * scale,
        )

    @property
    def sum_x(self) -> torch.Tensor:
        return self.mean_x * self.n

    @property
    def sum_y(self) -> torch.Tensor:
        return self.mean_y * self.n

    @property
    def xx(self) -> torch.Tensor:
        """Raw second moment XᵀX (dx, dx)."""
        return self.scatter_xx + self.n * torch.outer(self.mean_x, self.mean_x)

    @property
    def yy(self) -> torch.Tensor:
        """Raw second moment YᵀY (dy, dy)."""
        return self.scatter_yy + self.n * torch.outer(self.mean_y, self.mean_y)

    @property
    def xy(self) -> torch.Tensor:
        """Raw cross moment XᵀY (dx, dy)."""
        return self.scatter_xy + self.n * torch.outer(self.mean_x, self.mean_y)

    def mean_cca(self, **options: Any) -> float:
        """Mean CCA of the data seen so far (options: epsilon, allow_underdetermined)."""
        return scores.mean_cca_from_moments(self, **options)

    def pwcca(self, **options: Any) -> float:
        """PWCCA of the data seen so far (options: epsilon, convention, allow_underdetermined)."""
        return scores.pwcca_from_moments(self, **options)

    def svcca(self, **options: Any) -> float:
        """SVCCA of the data seen so far (options: threshold, dims, epsilon, allow_underdetermined)."""
        return scores.svcca_from_moments(self, **options)

    def linear_cka(self, **options: Any) -> float:
        """Linear CKA of the data seen so far (option: debiased)."""
        return scores.linear_cka_from_moments(self, **options)

    def cca(self, **options: Any) -> CCAResult:
        """Full CCA result of the data seen so far (options: epsilon, convention, allow_underdetermined)."""
        return canonical_correlation_analysis(self.covariance(), **options)


def centred_products(
    x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Means and centred products XcᵀXc, YcᵀYc, XcᵀYc of one batch x (n, dx), y (n, dy).

    On the CPU in float64 the three products go to one BLAS (SciPy's): the symmetric rank-k product
    ``dsyrk`` for XcᵀXc and YcᵀYc (half the work of a GEMM) and ``dgemm`` for XcᵀYc, reading row-major or
    column-major batches in place. Keeping every product in one thread pool matters on small machines:
    interleaving torch's OpenMP GEMM with OpenBLAS leaves one pool spinning while the other works.
    """
    if x.device.type != "cpu" or x.dtype != torch.float64:
        mean_x, mean_y = x.mean(0), y.mean(0)
        xc, yc = x - mean_x, y - mean_y
        return mean_x, mean_y, xc.T @ xc, yc.T @ yc, xc.T @ yc
    x_np, y_np = x.numpy(), y.numpy()
    # NaN or inf propagate silently here; the caller checks the results (MomentAccumulator.update).
    with np.errstate(invalid="ignore", over="ignore"):
        mean_x, mean_y = x_np.mean(0), y_np.mean(0)
        # Centred into fresh buffers in the input's own layout; the caller's memory is never touched.
        xc, yc = x_np - mean_x, y_np - mean_y
        products = (mean_x, mean_y, _symmetric_product(xc), _symmetric_product(yc), _cross_product(xc, yc))
    return tuple(torch.from_numpy(np.ascontiguousarray(value)) for value in products)


def _fortran_view(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """(array BLAS can read in place, whether it is aᵀ): a itself if column-major, aᵀ if row-major."""
    if a.flags.f_contiguous:
        return a, False
    if a.flags.c_contiguous:
        return a.T, True
    return np.asfortranarray(a), False


def _symmetric_product(a: np.ndarray) -> np.ndarray:
    """aᵀa (d, d) of a (n, d) array by ``dsyrk``, which fills the upper triangle; mirrored here."""
    view, transposed = _fortran_view(a)
    upper = dsyrk(1.0, view, trans=0 if transposed else 1)
    return np.triu(upper) + np.triu(upper, 1).T


def _cross_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """aᵀb (da, db) of (n, da) and (n, db) arrays by ``dgemm``, without copying either."""
    a_view, a_transposed = _fortran_view(a)
    b_view, b_transposed = _fortran_view(b)
    return dgemm(1.0, a_view, b_view, trans_a=0 if a_transposed else 1, trans_b=1 if b_transposed else 0)


def _batch_moments(x: torch.Tensor, y: torch.Tensor, fourth_moments: bool) -> MomentAccumulator:
    batch = MomentAccumulator(device=x.device, fourth_moments=fourth_moments)
    batch.n = x.shape[0]
    batch.mean_x, batch.mean_y, batch.scatter_xx, batch.scatter_yy, batch.scatter_xy = centred_products(x, y)
    if not fourth_moments:
        return batch
    xc, yc = x - batch.mean_x.to(x.device), y - batch.mean_y.to(y.device)
    squares = torch.stack([torch.linalg.vecdot(xc, xc), torch.linalg.vecdot(yc, yc)])  # (2, n): |x̃|², |ỹ|²
    on_x, on_y = squares @ xc, squares @ yc
    batch.quartic = {
        "x4": squares[0].dot(squares[0]).reshape(1),
        "y4": squares[1].dot(squares[1]).reshape(1),
        "x2y2": squares[0].dot(squares[1]).reshape(1),
        "x2x": on_x[0],
        "y2x": on_x[1],
        "x2y": on_y[0],
        "y2y": on_y[1],
    }
    return batch


def _shift_quartic(moments: MomentAccumulator, dx: torch.Tensor, dy: torch.Tensor) -> dict[str, torch.Tensor]:
    """The fourth-order sums of ``moments`` re-centred from its means m to m - (dx, dy), on dx's device.

    With x̃ centred rows (Σx̃ = 0), C = Σx̃x̃ᵀ and x̃' = x̃ + dx, every sum expands into the stored ones:
    x4 = Σ|x̃|⁴, x2x = Σ|x̃|²x̃, y2x = Σ|ỹ|²x̃ (and the same with x and y swapped), x2y2 = Σ|x̃|²|ỹ|².
    Kept centred this way, merges only ever shift by the distance between batch means, so the sums do not
    cancel when the activations' means dwarf their spread.
    """
    device, n = dx.device, moments.n
    q = {key: value.to(device) for key, value in moments.quartic.items()}
    cxx, cyy, cxy = (m.to(device) for m in (moments.scatter_xx, moments.scatter_yy, moments.scatter_xy))
    tx, ty = cxx.diagonal().sum(), cyy.diagonal().sum()
    sx, sy = dx @ dx, dy @ dy
    return {
        "x4": q["x4"] + 4 * dx @ q["x2x"] + 2 * sx * tx + 4 * dx @ cxx @ dx + n * sx * sx,
        "y4": q["y4"] + 4 * dy @ q["y2y"] + 2 * sy * ty + 4 * dy @ cyy @ dy + n * sy * sy,
        "x2y2": q["x2y2"]
        + 2 * dy @ q["x2y"]
        + 2 * dx @ q["y2x"]
        + sy * tx
        + sx * ty
        + 4 * dx @ cxy @ dy
        + n * sx * sy,
        "x2x": q["x2x"] + 2 * cxx @ dx + tx * dx + n * sx * dx,
        "y2y": q["y2y"] + 2 * cyy @ dy + ty * dy + n * sy * dy,
        "x2y": q["x2y"] + tx * dy + 2 * cxy.T @ dx + n * sx * dy,
        "y2x": q["y2x"] + ty * dx + 2 * cxy @ dy + n * sy * dx,
    }
