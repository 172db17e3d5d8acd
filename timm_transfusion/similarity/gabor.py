"""How Gabor-like first-layer filters are: correlation with a bank of Gabor filters, against a null of noise.

The paper shows Gabor filters in the first layer of pretrained networks and not in networks trained from
scratch on medical images. The score makes that a number. For a filter f (C, h, w) and a unit-norm Gabor g
(h, w) from the bank, the best colour-weighted Gabor c ⊗ g explains the share
``sqrt(Σ_c ⟨f_c, g⟩²) / ‖f‖`` of the filter (the cosine of the angle between f and the plane of c ⊗ g; the
best colour c has a closed form); the score is the largest share over the bank, in [0, 1]: 1 for a filter
that is a (colour-weighted) Gabor of the bank, lower the less of the filter any Gabor explains.

Small kernels leave little room between a Gabor and anything else (a 3×3 filter has 9 values per channel),
so a score is read against the null: the scores of i.i.d. Gaussian filters of the same shape. The bank's
longest wavelengths make smooth blobs and colour ramps Gabors of low frequency: the score separates smooth,
oriented structure from noise, which is what distinguishes first layers trained on natural images.

The bank, for an h×w kernel centred on its middle: 8 orientations in [0, π); 6 wavelengths spaced
geometrically from 2 px (Nyquist) to 2·max(h, w) px; envelope widths σ = 0.35λ and 0.56λ (about 1.5 and 1
octave bandwidth); aspect ratios 0.5 and 1; phases 0, π/4, π/2 and 3π/4 (the sign of a correlation is
ignored, which covers the other four).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import ActivationShapeError, SimilarityOptionError

ORIENTATIONS = 8
WAVELENGTHS = 6
BANDWIDTHS = (0.35, 0.56)
ASPECTS = (0.5, 1.0)
PHASES = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
NULL_SAMPLES = 2000


def gabor(
    size: tuple[int, int],
    *,
    wavelength: float,
    orientation: float,
    phase: float,
    sigma: float,
    aspect: float = 1.0,
    center: tuple[float, float] | None = None,
) -> torch.Tensor:
    """One Gabor filter (h, w) in float64: a cosine grating of ``wavelength`` px across ``orientation``
    (radians) with ``phase``, under a Gaussian envelope of width ``sigma`` (``aspect``·sigma along the
    grating), centred on ``center`` (row, column; default the kernel's middle)."""
    height, width = size
    cy, cx = center if center is not None else ((height - 1) / 2, (width - 1) / 2)
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) - cy,
        torch.arange(width, dtype=torch.float64) - cx,
        indexing="ij",
    )
    across = x * math.cos(orientation) + y * math.sin(orientation)
    along = -x * math.sin(orientation) + y * math.cos(orientation)
    envelope = torch.exp(-(across**2 + (aspect * along) ** 2) / (2 * sigma**2))
    return envelope * torch.cos(2 * math.pi * across / wavelength + phase)


def gabor_bank(size: tuple[int, int]) -> torch.Tensor:
    """(M, h·w) unit-norm Gabor filters of the module's bank for an h×w kernel (see the module docstring)."""
    height, width = size
    if height < 2 or width < 2:
        raise SimilarityOptionError(f"a Gabor bank needs kernels of at least 2×2; got {height}×{width}")
    longest = 2.0 * max(height, width)
    wavelengths = [2.0 * (longest / 2.0) ** (i / (WAVELENGTHS - 1)) for i in range(WAVELENGTHS)]
    filters = [
        gabor(
            size,
            wavelength=wavelength,
            orientation=math.pi * i / ORIENTATIONS,
            phase=phase,
            sigma=bandwidth * wavelength,
            aspect=aspect,
        )
        for wavelength in wavelengths
        for i in range(ORIENTATIONS)
        for phase in PHASES
        for bandwidth in BANDWIDTHS
        for aspect in ASPECTS
    ]
    bank = torch.stack(filters).reshape(len(filters), -1)
    norms = bank.norm(dim=1, keepdim=True)
    return bank[norms.squeeze(1) > 1e-9] / norms[norms.squeeze(1) > 1e-9]


def gabor_scores(filters: torch.Tensor) -> torch.Tensor:
    """(N,) Gabor-likeness of filters (N, C, h, w) in [0, 1]; NaN for an all-zero filter."""
    if filters.ndim != 4:
        raise ActivationShapeError(
            f"filters must be (out_channels, in_channels, h, w); got shape {tuple(filters.shape)}"
        )
    count, channels, height, width = filters.shape
    bank = gabor_bank((height, width))
    flat = filters.detach().double().cpu().reshape(count, channels, height * width)
    projections = torch.einsum("ncp,mp->nmc", flat, bank)  # ⟨f_c, g⟩ for every filter, template, channel
    explained = projections.square().sum(dim=2).amax(dim=1).sqrt()
    norms = flat.reshape(count, -1).norm(dim=1)
    return torch.where(norms > 0, explained / norms.clamp_min(1e-300), torch.nan)


def null_scores(shape: tuple[int, int, int], *, samples: int = NULL_SAMPLES, seed: int = 0) -> torch.Tensor:
    """(samples,) scores of i.i.d. Gaussian filters of ``shape`` (C, h, w): what noise scores on this bank."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, *shape, generator=generator, dtype=torch.float64)
    return gabor_scores(noise)


@dataclass(frozen=True)
class GaborScores:
    """Scores of one set of filters against the null of noise of the same shape.

    scores: each filter's score (NaN filters dropped), for intervals over filters.
    mean: their mean. null_mean, null_q95: the mean and 95th percentile of the null's scores.
    above_null: the fraction of filters scoring above ``null_q95`` (0.05 expected of noise).
    """

    scores: list[float]
    mean: float
    null_mean: float
    null_q95: float
    above_null: float


def score_filters(filters: torch.Tensor, *, null: torch.Tensor | None = None, seed: int = 0) -> GaborScores:
    """``GaborScores`` of filters (N, C, h, w); ``null`` (scores of noise of the same shape) is drawn when
    not given."""
    scores = gabor_scores(filters)
    scores = scores[~scores.isnan()]
    if scores.numel() == 0:
        raise ActivationShapeError("every filter is all zeros; there is nothing to score")
    null = null_scores(tuple(filters.shape[1:]), seed=seed) if null is None else null
    q95 = float(torch.quantile(null, 0.95))
    return GaborScores(
        scores=scores.tolist(),
        mean=float(scores.mean()),
        null_mean=float(null.mean()),
        null_q95=q95,
        above_null=float((scores > q95).double().mean()),
    )


def score_filter_pairs(
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], *, seed: int = 0
) -> dict[str, dict[str, GaborScores]]:
    """``pairs[init] = (before, after)`` first-layer weights -> ``{init: {"before": …, "after": …}}``, all
    against one null per filter shape."""
    score_pair = _pair_scorer(seed)
    return {init: score_pair(before, after) for init, (before, after) in pairs.items()}


def score_seed_filter_pairs(
    pairs: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]], *, seed: int = 0
) -> dict[str, dict[int, dict[str, GaborScores]]]:
    """``pairs[init][run_seed] = (before, after)`` for every training seed of every init ->
    ``{init: {run_seed: {"before": …, "after": …}}}``, all against one null per filter shape."""
    score_pair = _pair_scorer(seed)
    return {
        init: {run_seed: score_pair(before, after) for run_seed, (before, after) in by_seed.items()}
        for init, by_seed in pairs.items()
    }


def _pair_scorer(seed: int) -> Callable[[torch.Tensor, torch.Tensor], dict[str, GaborScores]]:
    """Scores (before, after) filters against nulls drawn once per filter shape (the same null for every
    init and seed, so their scores differ only by their filters)."""
    nulls: dict[tuple[int, ...], torch.Tensor] = {}

    def score_pair(before: torch.Tensor, after: torch.Tensor) -> dict[str, GaborScores]:
        result = {}
        for when, filters in (("before", before), ("after", after)):
            shape = tuple(filters.shape[1:])
            if shape not in nulls:
                nulls[shape] = null_scores(shape, seed=seed)
            result[when] = score_filters(filters, null=nulls[shape])
        return result

    return score_pair
