"""Per-image crop boxes, flips and filters for the device pipeline, drawn from (seed, epoch, image index) alone.

A counter-based generator (the splitmix64 mixer applied to the triple and a draw counter) gives every image its
own random numbers however the batches are cut, whichever process loads it and wherever a run resumed, and it
draws a whole batch with a few vectorised integer operations instead of seeding a generator per image.
The boxes follow timm's ``RandomResizedCropAndInterpolation``: scale and log-uniform aspect ratio, up to ten
attempts, then the central crop, and a horizontal flip with probability 1/2; coordinates stay continuous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import PipelineError
from .resample import FILTERS

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
ATTEMPTS = 10  # as torchvision's RandomResizedCrop.get_params
RANDOM_INTERPOLATIONS = ("bilinear", "bicubic")  # timm's "random"


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms(seed: int, epoch: int, indices: np.ndarray, count: int) -> np.ndarray:
    """(len(indices), count) float64 uniforms in [0, 1), a pure function of (seed, epoch, index, column)."""
    key = _mix(np.asarray([seed], dtype=np.uint64) + _GOLDEN)
    key = _mix(key + np.asarray([epoch], dtype=np.uint64) * _GOLDEN)
    state = _mix(key + np.asarray(indices, dtype=np.uint64) * _GOLDEN)
    counters = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN
    bits = _mix(state[:, None] + counters[None, :]) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


@dataclass(frozen=True)
class CropPolicy:
    """How a split's images become model inputs: random-resized crops (training) or the centre square."""

    interpolation: str
    random_crop: bool = False
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)
    hflip: float = 0.5

    @property
    def filters(self) -> tuple[str, ...]:
        """The filters this policy may give an image (``random`` mixes two, per image, while training)."""
        if self.interpolation == "random":
            return RANDOM_INTERPOLATIONS if self.random_crop else ("bilinear",)
        if self.interpolation not in FILTERS:
            raise PipelineError(
                f"unknown interpolation {self.interpolation!r}; choose from {FILTERS + ('random',)}"
            )
        return (self.interpolation,)

    def draw(
        self, seed: int, epoch: int, indices: np.ndarray, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (B, 4) float32 as x0, y0, w, h; flips (B,) bool; filter codes (B,) int64) for ``indices``."""
        count = len(indices)
        filters = self.filters
        codes = np.full(count, FILTERS.index(filters[0]), dtype=np.int64)
        if not self.random_crop:
            side = min(height, width)  # timm's eval: shorter side to the size, then the centre crop
            box = [(width - side) / 2, (height - side) / 2, side, side]
            return np.tile(np.asarray(box, np.float32), (count, 1)), np.zeros(count, bool), codes
        u = uniforms(seed, epoch, indices, 2 * ATTEMPTS + 4)
        area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, :ATTEMPTS])
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = np.exp(log_low + (log_high - log_low) * u[:, ATTEMPTS : 2 * ATTEMPTS])
        w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
        fits = (w <= width) & (h <= height)
        first = fits.argmax(axis=1)
        w, h = w[np.arange(count), first], h[np.arange(count), first]
        fallback_w, fallback_h = self._central(height, width)
        none_fit = ~fits.any(axis=1)
        w, h = np.where(none_fit, fallback_w, w), np.where(none_fit, fallback_h, h)
        x0 = u[:, 2 * ATTEMPTS] * (width - w)
        y0 = u[:, 2 * ATTEMPTS + 1] * (height - h)
        flips = u[:, 2 * ATTEMPTS + 2] < self.hflip
        if len(filters) > 1:
            picks = np.minimum((u[:, 2 * ATTEMPTS + 3] * len(filters)).astype(np.int64), len(filters) - 1)
            codes = np.asarray([FILTERS.index(f) for f in filters], dtype=np.int64)[picks]
        return np.stack([x0, y0, w, h], axis=1).astype(np.float32), flips, codes

    def _central(self, height: int, width: int) -> tuple[float, float]:
        """torchvision's fallback when no attempt fits: the whole image, cut to the nearest allowed ratio."""
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            return width, width / self.ratio[0]
        if in_ratio > self.ratio[1]:
            return height * self.ratio[1], height
        return width, height
