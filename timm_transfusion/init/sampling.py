"""Mean Var sampling and normalization-layer handling (Raghu et al. 2019, section 5)."""

from __future__ import annotations

import torch
from torch import nn

from .errors import InitOptionError
from .norms import norm_identities

BN_MODES = ("identity", "transfer", "meanvar")
STATS_MODES = ("tensor", "channel")
_CHUNK = 1 << 22  # elements per float64 block: 32 MiB, whatever the tensor's size


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise an `InitOptionError` naming the valid choices unless `value` is one of them."""
    if value not in choices:
        raise InitOptionError(f"{option}={value!r} is not valid; choose one of {', '.join(choices)}")


def norm_keys(model: nn.Module) -> set[str]:
    """State-dict keys owned directly by normalization layers (see `norms.NORM_IDENTITIES`)."""
    return set(norm_identities(model))


def identity_norm(value: float, like: torch.Tensor) -> torch.Tensor:
    """A tensor shaped like `like` filled with a normalization tensor's identity `value`."""
    return torch.full_like(like, value)


def sample_meanvar(
    source: torch.Tensor, like: torch.Tensor, *, stats: str, generator: torch.Generator | None
) -> torch.Tensor:
    """Draw i.i.d. normal values shaped like `like` with the mean and variance of `source`.

    `stats="tensor"` uses one mean/variance for the whole tensor (the paper); `"channel"` one per output
    channel (dim 0) for tensors of 2 or more dims.
    """
    values = source.detach()
    rows = (
        values.reshape(values.shape[0], -1)
        if stats == "channel" and values.ndim >= 2
        else values.reshape(1, -1)
    )
    mean, std = mean_std(rows)
    view = (-1,) + (1,) * (like.ndim - 1) if rows.shape[0] > 1 else (1,) * like.ndim
    noise = torch.empty(like.shape, dtype=like.dtype).normal_(generator=generator)
    return noise.mul_(std.view(view).to(like.dtype)).add_(mean.view(view).to(like.dtype)).to(like.device)


def mean_std(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 row means and population standard deviations of a (rows, n) tensor.

    Two passes (mean, then centred squares) over float64 blocks of at most `_CHUNK` elements: exact for
    tensors of 100 M elements (float32 sums of squares lose 2 % there) and for rows whose mean dwarfs
    their spread (a ViT's cls_token), with one block's worth of extra memory.
    """
    n = rows.shape[1]
    mean = _blockwise_sum(rows, None) / n
    return mean, (_blockwise_sum(rows, mean) / n).sqrt()


def _blockwise_sum(rows: torch.Tensor, centre: torch.Tensor | None) -> torch.Tensor:
    """Σ_j x_ij (centre None) or Σ_j (x_ij − centre_i)² per row, accumulated in float64 block by block."""
    total = torch.zeros(rows.shape[0], dtype=torch.float64, device=rows.device)
    row_step = min(rows.shape[0], _CHUNK)
    column_step = max(1, _CHUNK // row_step)
    for r in range(0, rows.shape[0], row_step):
        for c in range(0, rows.shape[1], column_step):
            block = rows[r : r + row_step, c : c + column_step].double()
            if centre is not None:
                block.sub_(centre[r : r + row_step, None]).square_()
            total[r : r + row_step] += block.sum(dim=1)
    return total
