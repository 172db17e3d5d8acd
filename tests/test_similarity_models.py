"""Layer-wise similarity of real timm models: capture, compare(), the report files and the `cca` command."""

from __future__ import annotations

import copy
import json
import math
import weakref

import numpy as np
import pytest
import timm
import torch
from conftest import shared_file
from safetensors.torch import load_file
from torch import nn

import timm_transfusion  # noqa: F401  (registers mobilenetv1_025)
from timm_transfusion import similarity
from timm_transfusion.cli import main
from timm_transfusion.similarity import LayerCapture, SimilarityReport, compare
from timm_transfusion.similarity.capture import match_spatial, subsample_positions

MOBILENET_LAYERS = ["stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4", "pre_logits"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _retina_batches(path, size: int = 96, batch_size: int = 100) -> torch.utils.data.DataLoader:
    """RetinaMNIST test images (400), resized to ``size`` px and ImageNet-normalised, as a DataLoader."""
    images = torch.from_numpy(np.load(path)["test_images"]).permute(0, 3, 1, 2).float() / 255
    images = nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
    images = (images - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=batch_size)


@pytest.fixture(scope="module")
def mobilenets():
    weights = shared_file("mobilenetv1_025_imagenet.safetensors")
    torch.manual_seed(0)
    random_init = timm.create_model("mobilenetv1_025")
    pretrained = timm.create_model("mobilenetv1_025")
    pretrained.load_state_dict(load_file(weights))
    return pretrained, random_init


@pytest.fixture(scope="module")
def retina_loader():
    return _retina_batches(shared_file("retinamnist.npz"))


@pytest.fixture(scope="module")
def pretrained_vs_random(mobilenets, retina_loader):
    return compare(*mobilenets, retina_loader, metrics=("pwcca", "svcca", "linear_cka"), max_positions=16)


def test_pretrained_vs_random_pwcca_is_finite_and_in_unit_interval(pretrained_vs_random):
    report = pretrained_vs_random
    assert [entry.name for entry in report.layers] == MOBILENET_LAYERS
    assert report.images == 400
    for value in report.column("pwcca"):
        assert value is not None and math.isfinite(value) and 0.0 <= value <= 1.0
    assert min(report.column("pwcca")) < 0.9  # random features really differ from ImageNet ones somewhere


def test_model_against_itself_at_two_checkpoints_gives_one_everywhere(mobilenets, retina_loader):
    pretrained = mobilenets[0]
    report = compare(pretrained, copy.deepcopy(pretrained), retina_loader, max_positions=16)
    for metric in report.metrics:
        assert report.column(metric) == pytest.approx([1.0] * len(MOBILENET_LAYERS), abs=1e-6), metric


def test_report_writes_json_csv_markdown_and_png(pretrained_vs_random, tmp_path):
    report = pretrained_vs_random
    paths = report.save(tmp_path)
    assert SimilarityReport.from_dict(json.loads(paths["json"].read_text())) == report
    rows = paths["csv"].read_text().splitlines()
    assert rows[0] == (
        "layer_a,layer_b,features_a,features_b,datapoints,pwcca,svcca,linear_cka,"
        "pwcca_null,svcca_null,linear_cka_null"
    )
    assert len(rows) == 1 + len(MOBILENET_LAYERS) and rows[-1].startswith(
        "pre_logits,pre_logits,256,256,400,"
    )
    assert "| blocks.4 | 256 | 256 | 3600 |" in paths["md"].read_text()
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_capture_by_block_group_uses_feature_info_and_the_stem():
    model = timm.create_model("mobilenetv1_025")
    capture = LayerCapture(model)
    assert capture.layers == MOBILENET_LAYERS
    activations = capture(torch.randn(2, 3, 64, 64))
    channels = [activations[name].shape[1] for name in MOBILENET_LAYERS]
    assert channels == [8, 16, 32, 64, 128, 256, 256]
    assert activations["pre_logits"].shape == (2, 256)


def test_intermediates_equal_hooked_module_outputs():
    model = timm.create_model("test_resnet").eval()
    seen = {}
    model.layer2.register_forward_hook(lambda _m, _i, output: seen.setdefault("layer2", output))
    captured = LayerCapture(model, ["layer2"])(torch.randn(2, 3, 64, 64))
    assert torch.equal(captured["layer2"], seen["layer2"])


def test_models_without_forward_intermediates_are_captured_with_hooks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    images = torch.randn(3, 3, 12, 12)
    captured = LayerCapture(model, ["1", "2"])(images)
    assert torch.equal(captured["1"], model[1](model[0](images)))
    assert torch.equal(captured["2"], model(images))
    with pytest.raises(similarity.LayerError, match="no layer 'conv9'"):
        LayerCapture(model, ["conv9"])


def test_position_subsampling_does_not_depend_on_batching():
    a, b = torch.randn(6, 49, 5), torch.randn(6, 49, 3)
    whole = subsample_positions(a, b, 0, 10, seed=3)
    parts = [
        subsample_positions(a[:2], b[:2], 0, 10, seed=3),
        subsample_positions(a[2:], b[2:], 2, 10, seed=3),
    ]
    assert torch.equal(whole[0], torch.cat([part[0] for part in parts]))
    assert torch.equal(whole[1], torch.cat([part[1] for part in parts]))
    assert whole[0].shape == (60, 5)


def test_layers_of_different_sizes_are_pooled_to_the_smaller():
    a, b = match_spatial(torch.randn(2, 4, 16, 16), torch.randn(2, 6, 8, 8))
    assert a.shape == (2, 4, 8, 8) and b.shape == (2, 6, 8, 8)
    model = timm.create_model("test_resnet")
    images = [torch.randn(8, 3, 64, 64) for _ in range(3)]
    report = compare(
        model, model, images, metrics=("linear_cka",), layers=[("layer1", "layer2")], max_positions=20
    )
    assert report.layers[0].datapoints == 24 * 20 and report.layers[0].features_a == 32


def test_underdetermined_layers_are_reported_as_missing_with_a_note():
    model = timm.create_model("test_resnet")
    report = compare(model, model, [torch.randn(8, 3, 64, 64)], metrics=("pwcca", "linear_cka"))
    pre_logits = report.layers[-1]
    assert pre_logits.values["pwcca"] is None and "8 datapoints for 96 features" in pre_logits.note
    assert pre_logits.values["linear_cka"] == pytest.approx(1.0)


def test_compare_keeps_no_earlier_batch_or_activation_alive():
    # Peak memory must not grow with the number of images: when batch k + 1 is requested, nothing the
    # models produced for batches before k may still be referenced (only the O(d²) statistics are kept).
    model = timm.create_model("test_resnet")
    outputs: list[list[weakref.ref]] = []  # per batch, a weak reference to every module output

    def remember(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            outputs[-1].append(weakref.ref(output))

    handles = [module.register_forward_hook(remember) for module in model.modules() if module is not model]
    leaked = []

    def batches():
        for _ in range(6):
            leaked.append(sum(ref() is not None for earlier in outputs[:-1] for ref in earlier))
            outputs.append([])
            yield torch.randn(4, 3, 48, 48)

    try:
        report = compare(model, copy.deepcopy(model), batches(), metrics=("linear_cka",), max_positions=8)
    finally:
        for handle in handles:
            handle.remove()
    assert report.images == 24
    assert sum(len(batch) for batch in outputs) > 0 and leaked == [0] * 6


def test_unknown_metric_names_the_choices():
    model = timm.create_model("test_resnet")
    with pytest.raises(similarity.SimilarityOptionError, match=r"unknown metrics \['cca'\].*'pwcca'"):
        compare(model, model, [], metrics=("cca",))


def test_cca_command_compares_a_run_folder_with_a_timm_model(retinamnist, tmp_path, capsys):
    torch.manual_seed(1)
    run = tmp_path / "run"
    timm.models.save_for_hf(timm.create_model("mobilenetv1_025", num_classes=5), run, safe_serialization=True)
    out = tmp_path / "report"
    argv = [
        "cca",
        str(run),
        "mobilenetv1_025",
        "--random-b",
        "--dataset",
        f"npz:{retinamnist}",
        "--limit",
        "300",
        "--img-size",
        "64",
        "--batch-size",
        "100",
        "--max-positions",
        "8",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    data = json.loads((out / "similarity.json").read_text())
    assert data["images"] == 300 and data["model_a"] == str(run)
    assert [layer["layer_a"] for layer in data["layers"]] == MOBILENET_LAYERS
    assert {path.name for path in out.iterdir()} == {
        f"similarity.{kind}" for kind in ("json", "csv", "md", "png")
    }
    assert "| pre_logits | 256 | 256 | 300 |" in capsys.readouterr().out


def test_cca_command_reports_a_missing_run_folder(tmp_path, capsys):
    argv = ["cca", f"local-dir:{tmp_path / 'absent'}", "test_resnet", "--dataset", "npz:x.npz", "--out", "o"]
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cca_command_reports_a_bad_dataset_in_one_line(tmp_path, capsys):
    argv = ["cca", "test_resnet", "test_resnet", "--no-pretrained", "--dataset", "npz:/absent.npz"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("transfusion cca: error:") and "absent.npz" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cca_command_refuses_an_unknown_metric(capsys):
    with pytest.raises(SystemExit):
        main(["cca", "a", "b", "--dataset", "npz:x", "--out", "o", "--metrics", "cka"])
    assert "invalid choice: 'cka'" in capsys.readouterr().err


def test_random_b_compares_a_pretrained_run_with_a_random_init(mobilenet_weights, retinamnist, tmp_path):
    run = tmp_path / "pretrained"
    model = timm.create_model("mobilenetv1_025", init="pretrained", init_source=mobilenet_weights)
    timm.models.save_for_hf(model, run, safe_serialization=True)
    argv = ["cca", str(run), "mobilenetv1_025", "--dataset", f"npz:{retinamnist}", "--limit", "64"]
    argv += [
        "--img-size",
        "32",
        "--max-positions",
        "4",
        "--metrics",
        "linear_cka",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2  # model B alone has no default weights to load: a user error
    assert main([*argv, "--random-b"]) == 0
    data = json.loads((tmp_path / "o" / "similarity.json").read_text())
    cka = [layer["values"]["linear_cka"] for layer in data["layers"]]
    assert all(value is not None and 0.0 <= value < 0.999 for value in cka), cka
