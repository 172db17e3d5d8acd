"""Library functions behind the command line: `compare_sources`, the source-kind decision, the PNG writer."""

from __future__ import annotations

import numpy as np
import pytest
import timm

from timm_transfusion.similarity.pipeline import OutputPathError, compare_sources
from timm_transfusion.source_kind import local_path, source_kind
from timm_transfusion.viz.figures import new_figure, save_png


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "tiny.npz"
    np.savez(
        path, test_images=rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8), test_labels=np.zeros((6, 1))
    )
    return path


def test_compare_sources_is_the_cca_command_as_a_function(tiny_npz, tmp_path):
    options = dict(dataset=f"npz:{tiny_npz}", pretrained=False, metrics=("linear_cka",), progress=False)
    report = compare_sources("test_resnet", "test_resnet", **options)
    assert report.images == 6
    # pretrained=False: both sides are random inits, and the report says which seed each got
    assert (report.model_a, report.model_b) == (
        "test_resnet [random init, seed 0]",
        "test_resnet [random init, seed 1]",
    )
    values = report.column("linear_cka")
    assert len(values) >= 3 and all(0.0 <= v <= 1.0 for v in values)
    assert min(values) < 0.999  # A and B get different seeds (seed, seed + 1): not the same weights
    out = tmp_path / "report"
    compare_sources("test_resnet", "test_resnet", out=out, **options)
    assert sorted(path.name for path in out.iterdir()) == [
        f"similarity.{k}" for k in ("csv", "json", "md", "png")
    ]


def test_compare_sources_refuses_a_file_as_the_report_folder(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputPathError, match="afile"):
        compare_sources("test_resnet", "test_resnet", dataset="npz:x.npz", out=tmp_path / "afile")


def test_source_kind_is_decided_in_one_place(tmp_path):
    (tmp_path / "weights.pth").write_bytes(b"")
    assert source_kind("hf-hub:timm/resnet18.a1_in1k") == "hf-hub"
    assert source_kind(f"local-dir:{tmp_path}") == "local-dir"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind(str(tmp_path / "weights.pth")) == "file"
    assert source_kind("missing/weights.safetensors") == "file"  # path-like: reported as a missing file
    assert source_kind("resnet18.a1_in1k") == "timm" and timm.is_model("resnet18")
    assert local_path(f"local-dir:{tmp_path}") == tmp_path


def test_png_writer_leaves_only_the_finished_file_and_no_pyplot_figure(tmp_path):
    import matplotlib.pyplot as plt

    figures_before = plt.get_fignums()
    figure = new_figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    path = save_png(figure, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    assert plt.get_fignums() == figures_before
