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
# Training augmentation of both pipelines (``transforms.build_transform`` passes the same to timm)
TRAIN_SCALE, TRAIN_RATIO, TRAIN_HFLIP = (0.8, 1.0), (0.9, 1.1), 0.5


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
    """How a split's images become model inputs: random-resized crops (training), or timm's eval view by the
    data config's ``crop_mode`` (``center``: the central square; ``squash``: the whole image)."""

    interpolation: str
    random_crop: bool = False
    crop_mode: str = "center"
    scale: tuple[float, float] = TRAIN_SCALE
    ratio: tuple[float, float] = TRAIN_RATIO
    hflip: float = TRAIN_HFLIP

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
            box = self._eval_box(height, width)
            return np.tile(np.asarray(box, np.float32), (count, 1)), np.zeros(count, bool), codes
        u = uniforms(seed, epoch, indices, 2 * ATTEMPTS + 4)
        area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, :ATTEMPTS])
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = np.exp(log_low + (log_high - log_low) * u[:, ATTEMPTS : 2 * ATTEMPTS])
        w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
        fits = (np.round(w) <= width) & (np.round(h) <= height)  # torchvision tests the rounded sizes
        first = fits.argmax(axis=1)
        w = np.minimum(w[np.arange(count), first], width)
        h = np.minimum(h[np.arange(count), first], height)
        fallback_w, fallback_h = self._central(height, width)
        none_fit = ~fits.any(axis=1)
        w, h = np.where(none_fit, fallback_w, w), np.where(none_fit, fallback_h, h)
        x0 = np.where(none_fit, 0.5, u[:, 2 * ATTEMPTS]) * (width - w)  # the fallback crop is centred
        y0 = np.where(none_fit, 0.5, u[:, 2 * ATTEMPTS + 1]) * (height - h)
        flips = u[:, 2 * ATTEMPTS + 2] < self.hflip
        if len(filters) > 1:
            picks = np.minimum((u[:, 2 * ATTEMPTS + 3] * len(filters)).astype(np.int64), len(filters) - 1)
            codes = np.asarray([FILTERS.index(f) for f in filters], dtype=np.int64)[picks]
        return np.stack([x0, y0, w, h], axis=1).astype(np.float32), flips, codes

    def _eval_box(self, height: int, width: int) -> list[float]:
        """timm's eval transform at crop_pct 1 as one box: ``center`` resizes the shorter side and cuts the
        centre; ``squash`` resizes the whole image; ``border`` (pad to a square) has no box unless square."""
        if self.crop_mode == "squash" or (self.crop_mode == "border" and height == width):
            return [0.0, 0.0, width, height]
        if self.crop_mode == "center":
            side = min(height, width)
            return [(width - side) / 2, (height - side) / 2, side, side]
        raise PipelineError(
            f"the device pipeline cannot reproduce crop_mode {self.crop_mode!r} on {width}x{height} images "
            "(it pads them); use --pipeline pil"
        )

    def _central(self, height: int, width: int) -> tuple[float, float]:
        """torchvision's fallback when no attempt fits: the whole image, cut to the nearest allowed ratio."""
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            return width, width / self.ratio[0]
        if in_ratio > self.ratio[1]:
            return height * self.ratio[1], height
        return width, height
