"""Resampled similarity: group moments merged with bootstrap weights, and replicates from compare()."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

import timm_transfusion  # noqa: F401  (registers the project's models)
from timm_transfusion.similarity import MomentAccumulator, compare, pwcca
from timm_transfusion.similarity.resample import GroupedMoments
from timm_transfusion.train.stats import bootstrap_indices, resample_counts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _groups(x: torch.Tensor, y: torch.Tensor, count: int) -> list[MomentAccumulator]:
    return [MomentAccumulator().update(x[g::count], y[g::count]) for g in range(count)]


def test_weighted_groups_equal_the_moments_of_the_resampled_data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=generator, dtype=torch.float64) + 5.0
    y = x @ torch.randn(4, 3, generator=generator, dtype=torch.float64) + torch.randn(
        60, 3, generator=generator
    )
    grouped = GroupedMoments(_groups(x, y, 5))
    weights = np.array([2.0, 0.0, 1.0, 0.0, 2.0])
    rows = [g for g, w in enumerate(weights) for _ in range(int(w))]
    expected = MomentAccumulator()
    for g in rows:
        expected.update(x[g::5], y[g::5])
    resampled = grouped.weighted(weights)
    assert resampled.n == expected.n
    for name in ("mean_x", "mean_y", "scatter_xx", "scatter_yy", "scatter_xy"):
        torch.testing.assert_close(getattr(resampled, name), getattr(expected, name))
    assert resampled.pwcca() == pytest.approx(
        pwcca(torch.cat([x[g::5] for g in rows]), torch.cat([y[g::5] for g in rows]))
    )


def test_unit_weights_give_every_datapoint_once():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 3, generator=generator), torch.randn(30, 2, generator=generator)
    total = GroupedMoments(_groups(x, y, 4)).total()
    full = MomentAccumulator().update(x, y)
    torch.testing.assert_close(total.scatter_xy, full.scatter_xy)


def test_bad_weights_name_the_groups():
    generator = torch.Generator().manual_seed(2)
    grouped = GroupedMoments(
        _groups(torch.randn(10, 2, generator=generator), torch.randn(10, 2, generator=generator), 2)
    )
    with pytest.raises(ValueError, match="2 non-negative numbers"):
        grouped.weighted([1.0, -1.0])


def test_compare_keeps_every_resample_and_unit_weights_reproduce_the_value():
    images = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    model_a = timm.create_model("mobilenetv1_025", num_classes=3)
    model_b = timm.create_model("mobilenetv1_025", num_classes=3)
    counts = resample_counts(bootstrap_indices(4, resamples=6, seed=0), 4)
    weights = np.vstack([np.ones(4), counts])
    report = compare(
        model_a,
        model_b,
        [images[:5], images[5:]],
        metrics=("linear_cka",),
        layers=["stem", "blocks.1"],
        replicate_weights=weights,
    )
    plain = compare(model_a, model_b, [images], metrics=("linear_cka",), layers=["stem", "blocks.1"])
    for entry, reference in zip(report.layers, plain.layers, strict=True):
        replicates = entry.replicates["linear_cka"]
        assert len(replicates) == 7
        assert replicates[0] == pytest.approx(entry.values["linear_cka"], rel=1e-9)
        assert entry.values["linear_cka"] == pytest.approx(reference.values["linear_cka"], rel=1e-9)
        assert len(set(np.round(replicates[1:], 12))) > 1  # resamples differ


def test_compare_refuses_replicate_weights_of_one_group():
    model = timm.create_model("mobilenetv1_025", num_classes=3)
    with pytest.raises(ValueError, match="groups ≥ 2"):
        compare(model, model, [torch.rand(2, 3, 32, 32)], replicate_weights=np.ones((3, 1)))
