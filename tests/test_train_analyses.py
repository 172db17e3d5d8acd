"""Intervals, tables, files and findings of the weight-scale and Gabor analyses for the experiment report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

import timm_transfusion  # noqa: F401  (registers the inits and models)
from timm_transfusion.init.scales import weight_scales
from timm_transfusion.similarity.gabor import GaborScores, gabor, score_seed_filter_pairs
from timm_transfusion.train.analyses import (
    gabor_above_null,
    gabor_init_summary,
    gabor_interval,
    gabor_seed_contrast,
    gabor_table,
    scale_intervals,
    write_gabor,
    write_weight_scales,
)
from timm_transfusion.train.errors import AnalysisKeyError
from timm_transfusion.train.paper_analyses import gabor_section


def _scores(values, null_mean=0.3) -> GaborScores:
    return GaborScores(list(values), float(np.mean(values)), null_mean, null_mean + 0.1, 0.0)


def test_a_known_difference_in_gabor_scores_is_detected_and_none_contains_zero():
    rng = np.random.default_rng(0)
    weights = {"a": 1.0, "b": -1.0}
    high, low = _scores(rng.normal(0.8, 0.05, 64)), _scores(rng.normal(0.6, 0.05, 64))
    assert gabor_seed_contrast({"a": {0: high}, "b": {0: low}}, weights).interval.low > 0.15
    same_a, same_b = _scores(rng.normal(0.6, 0.05, 64)), _scores(rng.normal(0.6, 0.05, 64))
    one_seed = gabor_seed_contrast({"a": {0: same_a}, "b": {0: same_b}}, weights)
    assert one_seed.interval.contains(0.0) and one_seed.interval.method == "1 seed: filters only"
    interval = gabor_interval(high)
    assert interval.low < interval.estimate < interval.high
    assert gabor_above_null(high).estimate == pytest.approx(high.mean - 0.3)


def _gabor_filters(count: int, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``count`` colour-weighted copies of one 7×7 Gabor plus Gaussian noise of sd ``noise``."""
    spatial = gabor((7, 7), wavelength=4.0, orientation=0.5, phase=0.0, sigma=2.0).float()
    clean = torch.stack([torch.stack([spatial * c for c in (1.0, 0.5, -0.3)])] * count)
    return clean + noise * torch.randn(count, 3, 7, 7, generator=generator)


def _gabor_vs_noise(seeds: int) -> dict:
    """``filters[init][seed]``: pretrained Gabor-like after fine-tuning, random noise, ``seeds`` runs each."""
    generator = torch.Generator().manual_seed(0)
    return {
        "pretrained": {
            s: (_gabor_filters(16, 0.01, generator), _gabor_filters(16, 0.05, generator))
            for s in range(seeds)
        },
        "random": {
            s: (torch.randn(16, 3, 7, 7, generator=generator), torch.randn(16, 3, 7, 7, generator=generator))
            for s in range(seeds)
        },
    }


def _by_seed(means: dict[int, float], sd: float = 0.01, count: int = 64, rng_seed: int = 0) -> dict:
    rng = np.random.default_rng(rng_seed)
    return {s: _scores(rng.normal(mean, sd, count)) for s, mean in means.items()}


def test_gabor_contrast_pairs_by_seed_so_a_shared_seed_effect_cancels():
    """Seeds differ a lot (0.3 / 0.6 / 0.9) but pretrained is 0.05 above random in every seed: paired by
    seed the difference is 0.05 with a tight interval; pairing random's seeds the wrong way round is not."""
    random = _by_seed({0: 0.3, 1: 0.6, 2: 0.9}, rng_seed=1)
    pretrained = _by_seed({0: 0.35, 1: 0.65, 2: 0.95}, rng_seed=2)
    weights = {"pretrained": 1.0, "random": -1.0}
    paired = gabor_seed_contrast({"pretrained": pretrained, "random": random}, weights)
    assert paired.per_seed == pytest.approx({0: 0.05, 1: 0.05, 2: 0.05}, abs=0.01)
    assert 0.0 < paired.interval.low < 0.05 < paired.interval.high < 0.1
    assert "3 seeds" in paired.interval.method and "filters" in paired.interval.method
    shuffled = {0: random[2], 1: random[0], 2: random[1]}
    unpaired = gabor_seed_contrast({"pretrained": pretrained, "random": shuffled}, weights)
    assert unpaired.per_seed[0] == pytest.approx(-0.55, abs=0.01)
    assert unpaired.interval.contains(0.0)


def test_gabor_contrast_uses_the_seeds_both_sides_have():
    pretrained = _by_seed({0: 0.8, 1: 0.8, 2: 0.8})
    random = _by_seed({1: 0.6, 2: 0.6, 5: 0.6}, rng_seed=1)
    measured = gabor_seed_contrast(
        {"pretrained": pretrained, "random": random}, {"pretrained": 1, "random": -1}
    )
    assert set(measured.per_seed) == {1, 2}
    assert (
        gabor_seed_contrast(
            {"pretrained": {0: pretrained[0]}, "random": {1: random[1]}}, {"pretrained": 1, "random": -1}
        )
        is None
    )
    with pytest.raises(AnalysisKeyError, match="'meanvar'"):
        gabor_seed_contrast({"pretrained": pretrained}, {"meanvar": 1.0})


def test_an_init_over_seeds_carries_both_the_seed_spread_and_the_filter_spread():
    """Across seeds the interval is wider when the seeds disagree (seed spread) and, with seeds that agree,
    wider when each seed's filters are noisier (filter spread)."""
    agree = gabor_seed_contrast({"x": _by_seed({0: 0.7, 1: 0.7, 2: 0.7})}, {"x": 1.0}).interval
    disagree = gabor_seed_contrast({"x": _by_seed({0: 0.6, 1: 0.7, 2: 0.8})}, {"x": 1.0}).interval
    noisy = gabor_seed_contrast({"x": _by_seed({0: 0.7, 1: 0.7, 2: 0.7}, sd=0.1)}, {"x": 1.0}).interval
    width = {name: i.high - i.low for name, i in (("agree", agree), ("disagree", disagree), ("noisy", noisy))}
    assert width["disagree"] > 3 * width["agree"] and width["noisy"] > 3 * width["agree"]
    assert disagree.contains(0.7) and agree.contains(0.7)


def test_seeds_that_start_from_the_same_source_filters_count_as_one_set_of_filters():
    """Every pretrained seed starts from the source's filters: resampling them once per seed would narrow
    their interval by sqrt(seeds) as if there were three sets."""
    source = _scores(np.random.default_rng(0).normal(0.9, 0.05, 8))
    summary = gabor_init_summary({0: source, 1: source, 2: source})
    alone = gabor_init_summary({0: source})
    triple = gabor_seed_contrast({"x": {0: source, 1: source, 2: source}}, {"x": 1.0})
    width = {
        name: c.interval.high - c.interval.low
        for name, c in (("summary", summary), ("alone", alone), ("triple", triple))
    }
    assert width["summary"] == pytest.approx(width["alone"])
    assert width["triple"] < 0.7 * width["summary"]
    assert summary.interval.estimate == pytest.approx(source.mean)


def test_gabor_finding_from_one_seed_is_inconclusive_however_clear(tmp_path):
    lines, finding, _ = gabor_section(_gabor_vs_noise(1), folder=tmp_path)
    assert finding.interval.low > 0.3  # the filters alone would call it
    assert finding.verdict == "inconclusive" and "1 seed" in finding.note
    assert finding.per_seed.keys() == {0}


def test_gabor_finding_over_three_separated_seeds_is_supported_and_paired(tmp_path):
    filters = _gabor_vs_noise(3)
    lines, finding, scores = gabor_section(filters, folder=tmp_path)
    assert finding.verdict == "supported" and finding.interval.low > 0.3
    assert "3 seeds paired" in finding.note and "16×3×7×7" in finding.note
    expected = {
        s: scores["pretrained"][s]["after"].mean - scores["random"][s]["after"].mean for s in range(3)
    }
    assert finding.per_seed == pytest.approx(expected)
    assert any(line.startswith("Pretrained − random after fine-tuning, paired by seed:") for line in lines)


def test_gabor_finding_without_random_runs_is_not_measured(tmp_path):
    filters = _gabor_vs_noise(2)
    _, finding, _ = gabor_section({"pretrained": filters["pretrained"]}, folder=tmp_path)
    assert finding.interval is None and finding.verdict == "inconclusive"
    assert "needs pretrained and random" in finding.note


def test_gabor_table_and_files_hold_every_seed_and_the_across_seed_summary(tmp_path):
    scores = score_seed_filter_pairs(_gabor_vs_noise(3))
    lines = gabor_table(scores)
    assert len(lines) == 4 and lines[2].startswith("| pretrained | 3 | 0.9")
    assert lines[2].count("[") == 2 + 3  # before and after across seeds, then each seed after
    difference = gabor_seed_contrast(
        {init: {s: t["after"] for s, t in scores[init].items()} for init in ("pretrained", "random")},
        {"pretrained": 1.0, "random": -1.0},
    )
    paths = write_gabor(tmp_path, scores, difference=difference)
    saved = json.loads(paths["json"].read_text())
    assert set(saved["scores"]["random"]) == {"0", "1", "2"}
    assert len(saved["scores"]["random"]["2"]["after"]["scores"]) == 16
    assert saved["difference"]["per_seed"].keys() == {"0", "1", "2"}
    assert saved["difference"]["estimate"] == pytest.approx(difference.interval.estimate)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["seed"] for r in rows if r["init"] == "random" and r["when"] == "after"] == [
        "0",
        "1",
        "2",
        "all",
    ]
    across = next(
        r for r in rows if r["init"] == "pretrained" and r["when"] == "after" and r["seed"] == "all"
    )
    per_seed = [
        float(r["mean"])
        for r in rows
        if r["init"] == "pretrained" and r["when"] == "after" and r["seed"] != "all"
    ]
    assert float(across["mean"]) == pytest.approx(np.mean(per_seed))
    assert float(across["interval_low"]) < float(across["mean"]) < float(across["interval_high"])
    assert int(across["filters"]) == 48


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
