"""Intervals, tables and files of the weight-scale and Gabor analyses for the experiment report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

import timm_transfusion  # noqa: F401  (registers the inits and models)
from timm_transfusion.init.scales import weight_scales
from timm_transfusion.similarity.gabor import GaborScores, gabor, score_filter_pairs
from timm_transfusion.train.analyses import (
    gabor_above_null,
    gabor_difference,
    gabor_interval,
    gabor_table,
    scale_intervals,
    write_gabor,
    write_weight_scales,
)


def _scores(values, null_mean=0.3) -> GaborScores:
    return GaborScores(list(values), float(np.mean(values)), null_mean, null_mean + 0.1, 0.0)


def test_a_known_difference_in_gabor_scores_is_detected_and_none_contains_zero():
    rng = np.random.default_rng(0)
    high, low = _scores(rng.normal(0.8, 0.05, 64)), _scores(rng.normal(0.6, 0.05, 64))
    assert gabor_difference(high, low).low > 0.15
    same_a, same_b = _scores(rng.normal(0.6, 0.05, 64)), _scores(rng.normal(0.6, 0.05, 64))
    assert gabor_difference(same_a, same_b).contains(0.0)
    interval = gabor_interval(high)
    assert interval.low < interval.estimate < interval.high
    assert gabor_above_null(high).estimate == pytest.approx(high.mean - 0.3)


def test_gabor_table_and_files_for_a_gabor_and_a_noise_init(tmp_path):
    spatial = gabor((7, 7), wavelength=4.0, orientation=0.5, phase=0.0, sigma=2.0)
    gabors = torch.stack([torch.stack([spatial * c for c in (1.0, 0.5, -0.3)])] * 16) + 0.01 * torch.randn(
        16, 3, 7, 7
    )
    noise = torch.randn(16, 3, 7, 7)
    scores = score_filter_pairs({"pretrained": (gabors, gabors), "random": (noise, noise)})
    lines = gabor_table(scores)
    assert len(lines) == 4 and lines[2].startswith("| pretrained | 0.9")
    paths = write_gabor(tmp_path, scores)
    saved = json.loads(paths["json"].read_text())
    assert {row["init"] for row in saved["summary"]} == {"pretrained", "random"}
    assert len(saved["scores"]["random"]["after"]["scores"]) == 16
    assert (
        paths["csv"]
        .read_text()
        .splitlines()[0]
        .startswith("init,when,filters,mean,interval_low,interval_high")
    )


def test_weight_scale_files_and_intervals_on_real_weights(mobilenet_weights, tmp_path):
    scales = weight_scales(timm.create_model("mobilenetv1_025"), str(mobilenet_weights))
    summary = scale_intervals(scales, "random")
    low, high = (
        summary["mean_abs_log2_ratio_interval"]["low"],
        summary["mean_abs_log2_ratio_interval"]["high"],
    )
    assert 0 < low < summary["mean_abs_log2_ratio"] < high
    assert scale_intervals(scales, "rescaled")["mean_abs_log2_ratio"] < 1e-6
    paths = write_weight_scales(tmp_path, scales)
    saved = json.loads(paths["json"].read_text())
    assert set(saved["summaries"]) == {"random", "meanvar", "rescaled"}
    source = load_file(mobilenet_weights)
    first = saved["tensors"][0]
    assert first["std"]["pretrained"] == pytest.approx(float(source[first["key"]].double().std(correction=0)))
    assert paths["md"].read_text().startswith("| tensor |") and paths["png"].stat().st_size > 0
