"""The null baseline (unpaired activations) and the small-sample bias note of similarity reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch

import timm_transfusion  # noqa: F401  (registers the project's models)
from timm_transfusion.similarity import MomentAccumulator, SimilarityReport, canonical_correlations, compare
from timm_transfusion.similarity.null import (
    DATAPOINTS_PER_FEATURE,
    UnpairedStream,
    bias_note,
    expected_null_sum_squared_cca,
    unpaired,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sum_squared_cca(moments: MomentAccumulator) -> float:
    return float((canonical_correlations(moments.covariance())[0] ** 2).sum())


def _gaussian(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def test_independent_gaussians_match_the_analytic_null_expectation():
    generator = torch.Generator().manual_seed(0)
    n, dx, dy, draws = 300, 5, 8, 120
    sums = [
        _sum_squared_cca(MomentAccumulator().update(_gaussian(generator, n, dx), _gaussian(generator, n, dy)))
        for _ in range(draws)
    ]
    standard_error = np.std(sums, ddof=1) / math.sqrt(draws)
    assert abs(np.mean(sums) - expected_null_sum_squared_cca(n, dx, dy)) < 4 * standard_error


def test_unpairing_identical_representations_gives_the_independent_null():
    """y = x is perfectly similar; shifted by one image the pairs are independent draws."""
    generator = torch.Generator().manual_seed(1)
    images, features, draws = 1000, 6, 25
    sums = []
    for _ in range(draws):
        x = _gaussian(generator, images, 1, features)
        stream = UnpairedStream()
        stream.update(x, x.clone())
        sums.append(_sum_squared_cca(stream.finish()))
    standard_error = np.std(sums, ddof=1) / math.sqrt(draws)
    expected = expected_null_sum_squared_cca(images, features, features)
    assert abs(np.mean(sums) - expected) < 4 * standard_error
    assert expected < 0.05  # far from the paired value, features = 6


def test_unpaired_stream_does_not_depend_on_the_batching():
    generator = torch.Generator().manual_seed(2)
    a, b = _gaussian(generator, 8, 3, 4), _gaussian(generator, 8, 3, 5)
    whole = UnpairedStream()
    whole.update(a, b)
    batched = UnpairedStream()
    for start, stop in ((0, 3), (3, 4), (4, 8)):
        batched.update(a[start:stop], b[start:stop])
    shifted = b.roll(-1, dims=0).roll(1, dims=1)  # the next image, positions moved by half of 3
    expected = MomentAccumulator().update(a.reshape(-1, 4), shifted.reshape(-1, 5))
    for stream in (whole, batched):
        moments = stream.finish()
        assert moments.n == 24
        torch.testing.assert_close(moments.scatter_xy, expected.scatter_xy)
        torch.testing.assert_close(moments.mean_y, expected.mean_y)


def test_aligned_images_do_not_pair_the_same_place():
    """Every image alike at each place (aligned scans): the same place in two images is perfectly similar,
    but the null pairs different places, like unrelated data."""
    generator = torch.Generator().manual_seed(7)
    places = _gaussian(generator, 1, 400, 3).expand(50, 400, 3)  # 50 images, identical at every place
    images = places + 1e-3 * _gaussian(generator, 50, 400, 3)
    stream = UnpairedStream()
    stream.update(images, images.clone())
    same_place = MomentAccumulator().update(images.reshape(-1, 3), images.roll(-1, dims=0).reshape(-1, 3))
    assert _sum_squared_cca(same_place) > 2.9  # 3 features, correlation ~1 each
    assert _sum_squared_cca(stream.finish()) < 0.05


def test_unpaired_stream_needs_two_images():
    stream = UnpairedStream()
    stream.update(torch.ones(1, 2, 3), torch.ones(1, 2, 3))
    assert stream.finish() is None


def test_unpaired_arrays_keep_each_side_and_break_the_pairing():
    x = np.arange(40.0).reshape(20, 2)
    kept, shuffled = unpaired(x, x, seed=3)
    np.testing.assert_array_equal(kept.numpy(), x)
    assert sorted(shuffled[:, 0].tolist()) == sorted(x[:, 0].tolist())
    assert not np.array_equal(shuffled.numpy(), x)


def test_bias_note_below_ten_datapoints_per_feature():
    assert bias_note(DATAPOINTS_PER_FEATURE * 16, 16, 8) is None
    note = bias_note(DATAPOINTS_PER_FEATURE * 16 - 1, 8, 16)
    assert note is not None and "16 features" in note and "biased" in note


def test_null_expectation_refuses_too_few_datapoints():
    with pytest.raises(ValueError, match="n - 1 > max"):
        expected_null_sum_squared_cca(5, 4, 2)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(4))


def test_compare_reports_a_null_far_below_the_paired_value_of_a_model_with_itself(images):
    model = timm.create_model("mobilenetv1_025", num_classes=4)
    report = compare(model, model, [images[:10], images[10:]], metrics=("pwcca", "linear_cka"))
    defined = [entry for entry in report.layers if entry.values["pwcca"] is not None]
    assert len(defined) >= 3  # the conv layers; pre_logits has fewer datapoints than features
    for entry in defined:
        assert entry.values["pwcca"] == pytest.approx(1.0, abs=1e-6)
        assert entry.null["pwcca"] < entry.values["pwcca"] - 0.05
    stem = report.layers[0]
    assert stem.null["linear_cka"] < 0.9 * stem.values["linear_cka"]
    assert report.null_column("pwcca") == [entry.null["pwcca"] for entry in report.layers]


def test_the_null_survives_json_and_shows_in_markdown_and_csv(images):
    model = timm.create_model("mobilenetv1_025", num_classes=4)
    report = compare(model, model, [images], metrics=("linear_cka",), layers=["stem", "pre_logits"])
    restored = SimilarityReport.from_dict(report.to_dict())
    assert restored.layers[1].null == report.layers[1].null
    assert "linear_cka (null)" in report.to_markdown()
    assert report.to_csv().splitlines()[0].endswith("linear_cka,linear_cka_null")


def test_pre_logits_of_few_images_carry_the_bias_note(images):
    model = timm.create_model("mobilenetv1_025", num_classes=4)
    report = compare(model, model, [images], metrics=("linear_cka",), layers=["pre_logits"])
    assert "biased upward" in report.layers[0].note  # 24 datapoints for 256 features


def test_compare_without_null_has_no_null_columns(images):
    model = timm.create_model("mobilenetv1_025", num_classes=4)
    report = compare(model, model, [images], metrics=("linear_cka",), layers=["stem"], null=False)
    assert not report.has_null and report.layers[0].null == {}
    assert "(null)" not in report.to_markdown()
