"""The Gabor-likeness score of first-layer filters, its null of noise, and the real MobileNet's stem."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from safetensors.torch import load_file

import timm_transfusion  # noqa: F401  (registers the project's models)
from timm_transfusion.similarity.gabor import (
    gabor,
    gabor_bank,
    gabor_scores,
    null_scores,
    score_filter_pairs,
    score_filters,
)


def _colour_gabor(size: int, colours=(0.5, -0.2, 0.9), **params) -> torch.Tensor:
    spatial = gabor((size, size), **params)
    return torch.stack([c * spatial for c in colours]).unsqueeze(0)


def test_a_gabor_of_the_bank_scores_one_whatever_its_colour_scale_and_sign():
    template = gabor_bank((7, 7))[123].reshape(7, 7)
    filters = torch.stack(
        [torch.stack([c * template for c in colours]) for colours in ((1, 1, 1), (-3, 0.1, 2))]
    )
    torch.testing.assert_close(gabor_scores(filters), torch.ones(2, dtype=torch.float64))


def test_a_gabor_off_the_bank_still_scores_near_one():
    params = dict(wavelength=4.3, orientation=0.3, phase=0.7, sigma=1.9, aspect=0.8)
    assert gabor_scores(_colour_gabor(7, **params)).item() > 0.95


def test_noise_scores_far_lower_and_like_its_null():
    noise = torch.randn(400, 3, 7, 7, generator=torch.Generator().manual_seed(5))
    result = score_filters(noise, seed=1)
    assert result.mean < 0.4
    assert abs(result.mean - result.null_mean) < 0.02
    assert 0.01 < result.above_null < 0.1  # 5 % of noise lies above the 95th percentile of noise


def test_scores_lie_in_zero_one_and_an_empty_filter_is_undefined():
    filters = torch.randn(50, 3, 5, 5, generator=torch.Generator().manual_seed(6))
    filters[7] = 0
    scores = gabor_scores(filters)
    assert math.isnan(scores[7])
    kept = scores[~scores.isnan()]
    assert bool(((kept > 0) & (kept <= 1 + 1e-12)).all())


def test_null_scores_fall_as_kernels_grow():
    means = [null_scores((3, k, k), samples=300).mean().item() for k in (3, 5, 7)]
    assert means[0] > means[1] > means[2]


def test_refuses_what_is_not_a_4d_filter_bank():
    with pytest.raises(ValueError, match="out_channels, in_channels"):
        gabor_scores(torch.zeros(3, 7, 7))


def test_pretrained_mobilenet_stem_is_more_gabor_like_than_its_random_init(mobilenet_weights):
    pretrained = load_file(mobilenet_weights)["conv_stem.weight"]
    random = timm.create_model("mobilenetv1_025").conv_stem.weight.detach()
    scores = score_filter_pairs({"pretrained": (pretrained, pretrained), "random": (random, random)})
    assert scores["pretrained"]["before"].mean > scores["pretrained"]["before"].null_q95
    assert scores["pretrained"]["before"].above_null > 0.5
    assert scores["random"]["before"].mean < scores["pretrained"]["before"].mean
