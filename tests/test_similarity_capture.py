"""Capturing, pairing and feeding layers of any timm model, writing the report, and the `cca` command's checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from torch import nn

import timm_transfusion  # noqa: F401  (registers the project's models)
from timm_transfusion import similarity
from timm_transfusion.cli import build_parser, main
from timm_transfusion.similarity import (
    LayerCapture,
    LayerSimilarity,
    SimilarityReport,
    compare,
    default_layers,
    pipeline,
)
from timm_transfusion.similarity.capture import is_channels_last
from timm_transfusion.similarity.sources import load_model, normalization

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SWIN_EMBED_DIM = 24


def _tiny_swin() -> nn.Module:
    """A channels-last (NHWC) model: swin with one block per stage, 32 px input, 8×8 patches after the stem."""
    return timm.create_model(
        "swin_tiny_patch4_window7_224",
        img_size=32,
        window_size=2,
        embed_dim=SWIN_EMBED_DIM,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
    )


def _report(pairs=(("layer1", "layer1"),)) -> SimilarityReport:
    entries = [LayerSimilarity(a, b, 4, 4, 10, {"linear_cka": 0.5}) for a, b in pairs]
    return SimilarityReport("A", "B", ("linear_cka",), entries, 10)


@pytest.fixture
def tiny_npz(tmp_path):
    """Six random 16 px RGB images in MedMNIST layout (split 'test')."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    images = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    np.savez(path, test_images=images, test_labels=np.zeros((6, 1), dtype=np.int64))
    return path


@pytest.fixture
def run_folder(tmp_path):
    """A run folder of test_resnet with 3 classes, as timm.models.save_for_hf writes it."""
    torch.manual_seed(5)
    run = tmp_path / "run"
    timm.models.save_for_hf(timm.create_model("test_resnet", num_classes=3), run, safe_serialization=True)
    return run


@pytest.fixture
def compare_calls(monkeypatch):
    """Replaces compare() for the `cca` command with a spy that records its arguments."""
    calls = []

    def spy(model_a, model_b, data, **options):
        calls.append({"model_a": model_a, "model_b": model_b, "data": data, **options})
        return _report()

    monkeypatch.setattr(pipeline, "compare", spy)  # the library function behind `transfusion cca`
    return calls


def _cca(*args, out, dataset) -> list[str]:
    return ["cca", *args, "--dataset", f"npz:{dataset}", "--img-size", "32", "--out", str(out)]


# Layouts: channels-last models and prefix tokens


def test_channels_last_layers_are_captured_as_nchw():
    model = _tiny_swin().eval()
    images = torch.randn(2, 3, 32, 32)
    hooked = {}
    model.patch_embed.register_forward_hook(lambda _m, _i, output: hooked.setdefault("stem", output))
    captured = LayerCapture(model, ["stem", "layers.0.blocks.0", "layers.0"])(images)
    assert captured["stem"].shape == (2, SWIN_EMBED_DIM, 8, 8)  # the patch embedding gives (2, 8, 8, 24)
    assert torch.equal(captured["stem"], hooked["stem"].permute(0, 3, 1, 2))
    assert captured["layers.0.blocks.0"].shape == captured["layers.0"].shape == (2, SWIN_EMBED_DIM, 8, 8)


def test_channels_last_stem_is_compared_with_embed_dim_features():
    model = _tiny_swin()
    report = compare(model, model, [torch.randn(4, 3, 32, 32)], metrics="linear_cka", layers="stem")
    entry = report.layers[0]
    assert (entry.features_a, entry.datapoints) == (SWIN_EMBED_DIM, 4 * 64)
    assert entry.values["linear_cka"] == pytest.approx(1.0)


def test_a_modules_own_output_format_wins_over_the_models():
    model, module = nn.Module(), nn.Identity()
    model.output_fmt = "NHWC"
    assert is_channels_last(model, module)
    module.output_fmt = timm.layers.Format.NCHW
    assert not is_channels_last(model, module)
    assert not is_channels_last(nn.Module(), nn.Identity())


def test_vit_and_distilled_deit_layers_pair_without_prefix_tokens():
    options = {"img_size": 32, "depth": 2}
    vit = timm.create_model("vit_tiny_patch16_224", **options)
    deit = timm.create_model("deit_tiny_distilled_patch16_224", **options)
    images = [torch.randn(3, 3, 32, 32)]
    report = compare(vit, deit, images, metrics="linear_cka", max_positions=None)
    assert [entry.name for entry in report.layers] == ["stem", "blocks.0", "blocks.1", "pre_logits"]
    assert [entry.datapoints for entry in report.layers] == [3 * 4, 3 * 4, 3 * 4, 3]


def test_hooked_token_layers_drop_the_cls_token():
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1).eval()
    captured = LayerCapture(model, ["blocks.0.attn", "blocks.0"])(torch.randn(2, 3, 32, 32))
    assert captured["blocks.0.attn"].shape == (2, 4, 192)
    assert captured["blocks.0"].shape == (2, 192, 2, 2)


# Modules that never run, containers and tuple outputs


def test_a_head_module_that_never_runs_is_a_layer_error_naming_what_can_be_captured():
    model = timm.create_model("test_resnet")
    with pytest.raises(similarity.LayerError, match=r"'fc' .* did not run in forward_features.*'layer1'"):
        compare(model, model, [torch.randn(2, 3, 32, 32)], layers=["fc"])


def test_unknown_layer_error_suggests_no_head_modules():
    model = timm.create_model("test_resnet")
    with pytest.raises(similarity.LayerError, match="no layer 'conv9'") as error:
        LayerCapture(model, ["conv9"])
    assert "'fc'" not in str(error.value) and "'global_pool'" not in str(error.value)


class _TwoPatchEmbeds(nn.Module):
    """Like crossvit: the stem group holds a ModuleList of patch embeddings that is never called itself."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.ModuleList([nn.Conv2d(3, 4, 2, 2), nn.Conv2d(3, 4, 4, 4)])
        self.blocks = nn.Sequential(nn.Conv2d(4, 4, 1))

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^patch_embed", "blocks": r"^blocks\.(\d+)"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.patch_embed[0](x))


def test_a_stem_that_is_a_module_list_is_not_a_layer():
    model = _TwoPatchEmbeds()
    assert "stem" not in default_layers(model)
    with pytest.raises(similarity.LayerError, match="no layer 'stem'"):
        LayerCapture(model, ["stem"])


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.lstm = nn.Conv2d(3, 4, 4, 4), nn.LSTM(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.conv(x).flatten(2).transpose(1, 2))[0]


def test_a_module_returning_a_tuple_is_a_layer_error_naming_it():
    model = _Recurrent()
    with pytest.raises(similarity.LayerError, match="'lstm' of _Recurrent returned a tuple"):
        compare(model, model, [torch.randn(2, 3, 8, 8)], layers=["lstm"])
    assert not any(module._forward_hooks for module in model.modules())


# Train/eval modes


def _frozen_bn_resnet() -> nn.Module:
    """A model set up for frozen-BN fine-tuning: train mode, its BatchNorm layers in eval mode."""
    model = timm.create_model("test_resnet").train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    return model


def _modes(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def test_compare_restores_every_modules_own_training_flag():
    model = _frozen_bn_resnet()
    before = _modes(model)
    compare(model, timm.create_model("test_resnet"), [torch.randn(2, 3, 32, 32)], metrics="linear_cka")
    assert _modes(model) == before
    assert False in before.values() and True in before.values()


def test_training_flags_are_restored_when_a_batch_fails():
    model = _frozen_bn_resnet()
    before = _modes(model)

    def batches():
        yield torch.randn(2, 3, 32, 32)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare(model, model, batches(), metrics="linear_cka")
    assert _modes(model) == before


# Default layer pairs


def test_one_architecture_pairs_every_layer_by_name():
    report = compare(
        timm.create_model("test_resnet"),
        timm.create_model("test_resnet"),
        [torch.randn(2, 3, 32, 32)],
        metrics="linear_cka",
    )
    names = ["act1", "layer1", "layer2", "layer3", "layer4", "pre_logits"]
    assert [(entry.layer_a, entry.layer_b) for entry in report.layers] == [(name, name) for name in names]


def test_different_architectures_pair_layers_by_reduction():
    resnet, convnext = timm.create_model("test_resnet"), timm.create_model("test_convnext")
    report = compare(resnet, convnext, [torch.randn(2, 3, 64, 64)], metrics="linear_cka")
    assert [entry.name for entry in report.layers] == [
        "layer1|stages.0",
        "layer2|stages.1",
        "layer3|stages.2",
        "layer4|stages.3",
        "pre_logits",
    ]


def test_the_last_layer_at_a_reduction_is_the_one_paired():
    vit = timm.create_model("test_vit")  # six blocks, all at reduction 16
    resnet = timm.create_model("test_resnet")
    report = compare(vit, resnet, [torch.randn(2, 3, 160, 160)], metrics="linear_cka")
    assert [(entry.layer_a, entry.layer_b) for entry in report.layers] == [
        ("blocks.5", "layer3"),
        ("pre_logits", "pre_logits"),
    ]


def test_models_with_nothing_to_pair_name_both_models_layers():
    first = nn.Sequential(nn.Conv2d(3, 4, 3))
    second = nn.Sequential(nn.Conv2d(3, 8, 3))
    with pytest.raises(similarity.LayerError, match=r"no default layer pairs for Sequential .* Sequential"):
        compare(first, second, [torch.randn(2, 3, 8, 8)])


def test_cca_layers_accept_name_a_colon_name_b_pairs():
    args = build_parser().parse_args(
        ["cca", "a", "b", "--dataset", "x", "--out", "o", "--layers", "x:y", "z"]
    )
    assert args.layers == [("x", "y"), "z"]


def test_cca_layers_refuse_a_half_pair(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["cca", "a", "b", "--dataset", "x", "--out", "o", "--layers", "x:"])
    assert "NAME_A:NAME_B" in capsys.readouterr().err


# Inputs and options


def test_each_model_gets_its_own_preprocessing():
    model_a, model_b = timm.create_model("test_resnet"), timm.create_model("test_efficientnet")
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    preprocess_a, preprocess_b = normalization(model_a, 32), normalization(model_b, 32)
    seen = {}
    model_b.conv_stem.register_forward_pre_hook(lambda _m, inputs: seen.setdefault("b", inputs[0]))
    compare(
        model_a, model_b, [images], metrics="linear_cka", preprocess=preprocess_a, preprocess_b=preprocess_b
    )
    assert torch.equal(seen["b"], preprocess_b(images))
    assert not torch.allclose(preprocess_a(images), preprocess_b(images))  # mean/std 0.5 vs ImageNet's


def test_model_b_gets_model_a_preprocessing_by_default():
    model = timm.create_model("test_resnet")
    seen = []
    model.conv1.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    preprocess = normalization(model, 32)
    compare(model, model, [images], metrics="linear_cka", layers="layer1", preprocess=preprocess)
    assert len(seen) == 2 and all(torch.equal(batch, preprocess(images)) for batch in seen)


@pytest.mark.parametrize("max_positions", [0, -1, 2.5])
def test_max_positions_must_be_a_positive_integer(max_positions):
    model = timm.create_model("test_resnet")
    with pytest.raises(similarity.SimilarityOptionError, match="max_positions must be a positive integer"):
        compare(model, model, [torch.randn(2, 3, 32, 32)], max_positions=max_positions)


def test_a_bad_epsilon_is_refused_before_any_image_is_read():
    model = timm.create_model("test_resnet")

    def batches():
        raise AssertionError("no image may be read")
        yield

    with pytest.raises(similarity.SimilarityOptionError, match="epsilon must be a finite number"):
        compare(model, model, batches(), epsilon=-1.0)


def test_one_metric_and_one_layer_may_be_given_as_strings():
    model = timm.create_model("test_resnet")
    report = compare(model, model, [torch.randn(2, 3, 32, 32)], metrics="linear_cka", layers="layer1")
    assert report.metrics == ("linear_cka",) and [entry.name for entry in report.layers] == ["layer1"]


def test_uint8_images_need_preprocess():
    model = timm.create_model("test_resnet")
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with pytest.raises(similarity.SimilarityOptionError, match=r"torch.uint8.*pass preprocess="):
        compare(model, model, [images])


def test_a_single_tensor_as_data_is_refused():
    model = timm.create_model("test_resnet")
    with pytest.raises(similarity.SimilarityOptionError, match=r"data must yield batches \(B, C, H, W\)"):
        compare(model, model, torch.randn(2, 3, 32, 32))


def test_images_with_the_wrong_channel_count_name_both_counts():
    model, gray = timm.create_model("test_resnet"), timm.create_model("test_resnet", in_chans=1)
    with pytest.raises(similarity.SimilarityOptionError, match="1 channels but model A .* expects 3"):
        compare(model, model, [torch.randn(2, 1, 32, 32)])
    report = compare(gray, gray, [torch.randn(2, 1, 32, 32)], metrics="linear_cka", layers="layer1")
    assert report.images == 2  # the first conv's in_chans counts, not pretrained_cfg's input_size


# The report files


def test_markdown_escapes_the_bar_of_a_paired_layer():
    report = _report([("layer1", "layer2")])
    assert "| layer1\\|layer2 | 4 | 4 | 10 | 0.5000 |" in report.to_markdown()
    assert report.layers[0].name == "layer1|layer2"


def test_save_refuses_a_target_that_is_not_a_file_and_writes_nothing(tmp_path):
    (tmp_path / "similarity.png").mkdir()
    with pytest.raises(FileExistsError, match="similarity.png"):
        _report().save(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["similarity.png"]


def test_a_failing_render_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    _report().save(tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def broken_plot(*_args, **_kwargs):
        raise RuntimeError("no plot")

    monkeypatch.setattr("timm_transfusion.viz.similarity.plot_similarity", broken_plot)
    with pytest.raises(RuntimeError, match="no plot"):
        _report([("layer2", "layer2")]).save(tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


# Run folders and the `cca` command


def test_a_run_folder_loads_its_weights_or_a_seeded_random_init(run_folder):
    saved = load_model(str(run_folder)).state_dict()
    random = load_model(str(run_folder), pretrained=False, seed=1).state_dict()
    again = load_model(f"local-dir:{run_folder}", pretrained=False, seed=1).state_dict()
    assert saved["fc.weight"].shape == random["fc.weight"].shape == (3, 96)
    assert not torch.equal(saved["conv1.0.weight"], random["conv1.0.weight"])
    assert all(torch.equal(random[key], again[key]) for key in random)


def test_a_run_folder_config_without_num_classes_loads(run_folder):
    config_file = run_folder / "config.json"
    config = json.loads(config_file.read_text())
    del config["num_classes"]
    config_file.write_text(json.dumps(config))
    assert load_model(str(run_folder)).num_classes == 3  # from the config's model_args


def test_cca_random_b_gives_model_b_random_weights_for_a_run_folder(
    run_folder, tiny_npz, tmp_path, compare_calls
):
    argv = _cca(str(run_folder), str(run_folder), out=tmp_path / "o", dataset=tiny_npz)
    assert main(argv) == 0 and main([*argv, "--random-b"]) == 0
    same, random_b = compare_calls
    saved = same["model_a"].state_dict()
    assert all(torch.equal(saved[key], value) for key, value in same["model_b"].state_dict().items())
    assert not torch.equal(saved["conv1.0.weight"], random_b["model_b"].state_dict()["conv1.0.weight"])
    assert torch.equal(saved["conv1.0.weight"], random_b["model_a"].state_dict()["conv1.0.weight"])


def test_cca_normalises_each_models_images_with_its_own_mean_and_std(tiny_npz, tmp_path, compare_calls):
    argv = _cca("test_resnet", "test_efficientnet", "--no-pretrained", out=tmp_path / "o", dataset=tiny_npz)
    assert main(argv) == 0
    call = compare_calls[0]
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert call["preprocess"](white)[0, :, 0, 0].tolist() == pytest.approx([1.0, 1.0, 1.0])  # 0.5 / 0.5
    expected = [(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)]
    assert call["preprocess_b"](white)[0, :, 0, 0].tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("out", ["afile", "afile/report"])
def test_cca_checks_out_before_loading_models(out, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    argv = ["cca", "no_such_model", "no_such_model", "--dataset", "npz:x.npz", "--out", str(tmp_path / out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("transfusion cca: error:") and err.count("\n") == 1
    assert "afile" in err and "no_such_model" not in err


def test_cca_reports_a_report_that_cannot_be_saved_in_one_line(tiny_npz, tmp_path, compare_calls, capsys):
    out = tmp_path / "o"
    (out / "similarity.json").mkdir(parents=True)
    assert main(_cca("test_resnet", "test_resnet", "--no-pretrained", out=out, dataset=tiny_npz)) == 2
    err = capsys.readouterr().err
    assert err.startswith("transfusion cca: error:") and "similarity.json" in err and "Traceback" not in err
    assert sorted(path.name for path in out.iterdir()) == ["similarity.json"]


def test_cca_hints_at_img_size_for_a_fixed_size_model(tiny_npz, tmp_path, capsys):
    vit = "vit_tiny_patch16_224"  # built for 224 px only
    argv = _cca(vit, vit, "--no-pretrained", out=tmp_path / "o", dataset=tiny_npz)
    assert main(argv) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("transfusion cca: error: model VisionTransformer cannot take 32x32 images")
    assert "Input height (32) doesn't match model (224)" in error
    assert error.endswith("choose another --img-size")
    assert not (tmp_path / "o").exists()


def test_cca_reports_bad_max_positions_in_one_line(tiny_npz, tmp_path, capsys):
    argv = _cca(
        "test_resnet",
        "test_resnet",
        "--no-pretrained",
        "--max-positions",
        "0",
        out=tmp_path / "o",
        dataset=tiny_npz,
    )
    assert main(argv) == 2
    assert "--max-positions must be >= 1, got 0" in capsys.readouterr().err
