"""Seeded model building that leaves the caller's random state untouched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's RNGs seeded by `seed` (all of them forked and restored afterwards).

    With `seed=None` the block draws from the caller's RNG as stock timm would.
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
