"""Pretrained vs random after fine-tuning, per layer, against random seed vs seed (from run folders)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import timm_transfusion  # noqa: F401  (registers the project's models)
from timm_transfusion.train.cross_init import (
    bootstrap_interval,
    cross_init_similarity,
    cross_init_table,
    write_cross_init,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def dataset(tmp_path) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    np.savez(path, test_images=images, test_labels=rng.integers(0, 3, (40, 1)))
    return f"npz:{path}"


@pytest.fixture
def runs(tmp_path) -> dict[int, str]:
    """Three run folders of mobilenetv1_025 (3 classes, 32 px) with different random weights."""
    folders = {}
    for seed in range(3):
        torch.manual_seed(seed)
        folder = tmp_path / f"random-seed{seed}"
        timm.models.save_for_hf(
            timm.create_model("mobilenetv1_025", num_classes=3), folder, safe_serialization=True
        )
        (folder / "summary.json").write_text(json.dumps({"img_size": 32, "num_classes": 3}))
        folders[seed] = str(folder)
    return folders


OPTIONS = dict(metrics=("linear_cka", "pwcca"), groups=4, resamples=20, images=24)


def test_a_model_against_itself_is_one_and_above_the_seed_baseline(runs, dataset):
    result = cross_init_similarity(runs, runs, dataset=dataset, **OPTIONS)
    for entry in result.for_metric("linear_cka"):
        assert entry.a_vs_b.estimate == pytest.approx(1.0, abs=1e-9)
        assert set(entry.pairs_a_vs_b) == {"0", "1", "2"} and set(entry.pairs_b_vs_b) == {"0-1", "0-2", "1-2"}
        assert entry.b_vs_b.low <= entry.b_vs_b.high
        assert entry.null is not None and entry.null < 1.0 and entry.null_b_vs_b is not None
    stem = result.for_metric("linear_cka")[0]
    assert stem.difference.low > 0  # different random inits share little at the stem


def test_the_same_kind_of_models_give_a_difference_of_zero(runs, dataset):
    """A's seeds are B's other seeds: A vs B is the same pair of models as B vs B (CKA is symmetric; PWCCA
    weights by one side and is not)."""
    two = {0: runs[0], 1: runs[1]}
    swapped = {0: runs[1], 1: runs[0]}
    result = cross_init_similarity(swapped, two, dataset=dataset, **OPTIONS)
    for entry in result.for_metric("linear_cka"):
        assert entry.difference.estimate == pytest.approx(0.0, abs=1e-9)
        assert abs(entry.difference.low) < 1e-9 and abs(entry.difference.high) < 1e-9  # 0 in every resample


def test_one_seed_of_b_has_no_baseline_and_no_common_seed_is_an_error(runs, dataset):
    result = cross_init_similarity({0: runs[1]}, {0: runs[0]}, dataset=dataset, **OPTIONS)
    assert all(entry.b_vs_b is None and entry.difference is None for entry in result.layers)
    with pytest.raises(ValueError, match="no seed in common"):
        cross_init_similarity({5: runs[1]}, {0: runs[0]}, dataset=dataset, **OPTIONS)


def test_table_files_and_plot(runs, dataset, tmp_path):
    result = cross_init_similarity(runs, {0: runs[1], 1: runs[2]}, dataset=dataset, **OPTIONS)
    lines = cross_init_table(result, "pwcca")
    assert lines[0].startswith("| layer | datapoints / feature | pretrained vs random | random seed vs seed")
    assert lines[0].endswith("| null (A vs B / B vs B) |")
    assert len(lines) == 2 + len(result.for_metric("pwcca"))
    paths = write_cross_init(tmp_path / "out", result)
    saved = json.loads(paths["json"].read_text())
    assert saved["metrics"] == ["linear_cka", "pwcca"] and len(saved["layers"]) == len(result.layers)
    assert paths["csv"].read_text().startswith("layer,metric,comparison,estimate,low,high")
    with Image.open(paths["png"]) as image:
        assert image.size[0] > 800


def test_a_shifted_bootstrap_gives_an_interval_that_holds_the_estimate():
    """Replicates 0.1 above the estimate (the inflation repeated images cause): the percentile interval
    alone would miss the estimate from above, its reflection from below; the join spans both."""
    replicates = 0.6 + np.linspace(-0.05, 0.05, 201)
    interval = bootstrap_interval(0.5, replicates)
    assert interval.low == pytest.approx(0.5 - 0.1 - 0.05 * 0.95, abs=1e-3)
    assert interval.high == pytest.approx(0.6 + 0.05 * 0.95, abs=1e-3)
    assert interval.contains(0.5) and "percentile ∪ basic" in interval.method


def test_a_centred_bootstrap_gives_its_percentile_interval():
    replicates = 0.5 + np.linspace(-0.05, 0.05, 201)
    interval = bootstrap_interval(0.5, replicates)
    assert interval.low == pytest.approx(0.5 - 0.05 * 0.95, abs=1e-3)
    assert interval.high == pytest.approx(0.5 + 0.05 * 0.95, abs=1e-3)
