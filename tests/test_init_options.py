"""Initializer options, sources and the create_model integration, on small models."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import load_file
from timm.models import save_for_hf
from timm.models._factory import create_model as stock_create_model

import timm_transfusion
from timm_transfusion.init import apply_init, block_groups, register_init, registry
from timm_transfusion.init.sampling import norm_keys


@pytest.fixture
def weights(mobilenet_weights):
    return str(mobilenet_weights)


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


@pytest.mark.parametrize(
    ("name", "kwargs"), [("resnet18", {"num_classes": 7}), ("vit_tiny_patch16_224", {"init_values": 1e-5})]
)
def test_without_init_create_model_is_stock_timm(name, kwargs):
    torch.manual_seed(3)
    ours = timm.create_model(name, **kwargs)
    torch.manual_seed(3)
    stock = stock_create_model(name, **kwargs)
    assert (
        timm.create_model is stock_create_model
    )  # init= reaches timm through its entrypoints, not a rebinding
    assert same_state(ours, stock)
    assert ours.pretrained_cfg == stock.pretrained_cfg


def test_timm_keywords_named_init_pass_through_with_an_init():
    model = timm.create_model("vit_tiny_patch16_224", init="random", init_seed=1, init_values=1e-5)
    torch.manual_seed(1)
    assert same_state(model, stock_create_model("vit_tiny_patch16_224", init_values=1e-5))
    assert torch.all(model.blocks[0].ls1.gamma == 1e-5)


def test_random_init_is_exactly_timms_model_for_the_seed():
    model = timm.create_model("cbr_small", init="random", init_seed=5, num_classes=3)
    torch.manual_seed(5)
    stock = stock_create_model("cbr_small", num_classes=3)
    assert same_state(model, stock)  # same keys, each tensor equal (no zip that stops at the shorter)
    reapplied = apply_init(timm.create_model("cbr_small", num_classes=3), "random", seed=5)
    assert same_state(reapplied, stock)


def test_pretrained_copies_everything_and_keeps_a_resized_head_random(weights):
    source = load_file(weights)
    model = timm.create_model(
        "mobilenetv1_025", init="pretrained", init_source=weights, init_seed=0, num_classes=5
    )
    random = timm.create_model("mobilenetv1_025", init="random", init_seed=0, num_classes=5).state_dict()
    for key, value in model.state_dict().items():
        expected = random[key] if key.startswith("classifier.") else source[key]
        assert torch.equal(value, expected), key


def test_hybrid_copies_lower_groups_and_samples_the_rest(weights):
    source = load_file(weights)
    model = timm.create_model(
        "mobilenetv1_025", init="transfusion-2+meanvar", init_source=weights, init_seed=0
    )
    lower, norms = block_groups(model).keys_up_to(2), norm_keys(model)
    state = model.state_dict()
    assert all(torch.equal(state[k], source[k]) for k in lower)
    upper_weights = [k for k in state if k not in lower and k not in norms and k.endswith("weight")]
    assert upper_weights and not any(torch.equal(state[k], source[k]) for k in upper_weights)
    assert all(torch.all(state[k] == 1) for k in norms - lower if k.endswith("running_var"))


def test_bn_transfer_copies_norm_layers_and_bn_meanvar_samples_them(weights):
    source = load_file(weights)
    transfer = timm.create_model("mobilenetv1_025", init="meanvar", init_source=weights, init_bn="transfer")
    sampled = timm.create_model(
        "mobilenetv1_025", init="meanvar", init_source=weights, init_options={"bn": "meanvar"}
    )
    norms = norm_keys(transfer)
    assert all(torch.equal(transfer.state_dict()[k], source[k]) for k in norms if "num_batches" not in k)
    gamma = sampled.state_dict()["blocks.4.0.bn2.weight"]
    assert not torch.equal(gamma, source["blocks.4.0.bn2.weight"]) and not torch.all(gamma == 1)
    assert torch.all(sampled.state_dict()["blocks.4.0.bn2.running_var"] == 1)


def test_channel_statistics_follow_each_output_channel():
    source = {k: v.clone() for k, v in timm.create_model("cbr_small").state_dict().items()}
    offsets = torch.arange(256, dtype=torch.float32).view(-1, 1, 1, 1)
    source["stages.2.conv.weight"] = source["stages.2.conv.weight"] + offsets
    model = timm.create_model(
        "cbr_small", init="meanvar", init_source=source, init_stats="channel", init_seed=0
    )
    channel_means = model.stages[2].conv.weight.detach().mean(dim=(1, 2, 3))
    assert torch.allclose(channel_means, offsets.flatten(), atol=0.05)


def test_every_source_form_gives_the_same_weights(tmp_path, weights):
    state = load_file(weights)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth.tar")
    torch.save(state, tmp_path / "pytorch_model.bin")
    source_model = timm.create_model("mobilenetv1_025", init="pretrained", init_source=weights)
    save_for_hf(source_model, tmp_path / "hf")
    sources = [
        weights,
        tmp_path / "ckpt.pth.tar",
        str(tmp_path / "pytorch_model.bin"),
        state,
        source_model,
        f"local-dir:{tmp_path / 'hf'}",
        str(tmp_path / "hf"),
    ]
    for source in sources:
        model = timm.create_model("mobilenetv1_025", init="transfusion-5", init_source=source, num_classes=4)
        assert torch.equal(model.blocks[4][0].conv_pw.weight, state["blocks.4.0.conv_pw.weight"]), source


def test_features_only_overlay_and_local_dir_round_trip(tmp_path, weights):
    overlay = dict(file=weights)
    features = timm.create_model(
        "mobilenetv1_025",
        features_only=True,
        out_indices=(1, 3),
        init="transfusion-1",
        pretrained_cfg_overlay=overlay,
        init_seed=0,
    )
    full = timm.create_model(
        "mobilenetv1_025", init="transfusion-1", pretrained_cfg_overlay=overlay, init_seed=0
    )
    source = load_file(weights)
    assert torch.equal(features.conv_stem.weight, source["conv_stem.weight"])
    assert torch.equal(features.blocks[3][0].conv_pw.weight, full.blocks[3][0].conv_pw.weight)
    outputs = features(torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == features.feature_info.channels() == [32, 128]

    model = timm.create_model(
        "mobilenetv1_025", init="meanvar", pretrained_cfg_overlay=overlay, num_classes=3
    )
    save_for_hf(model, tmp_path / "run")
    loaded = timm.create_model(f"local-dir:{tmp_path / 'run'}", pretrained=True)
    assert loaded.num_classes == 3
    assert same_state(model, loaded)
    reinit = timm.create_model(f"local-dir:{tmp_path / 'run'}", init="transfusion-0", init_source=weights)
    assert torch.equal(reinit.conv_stem.weight, source["conv_stem.weight"])
    assert reinit.num_classes == 3
    # with no source, a local-dir model's default weights are its own folder's, as pretrained=True loads
    apply_init(
        loaded.apply(lambda m: torch.nn.init.zeros_(m.weight) if isinstance(m, torch.nn.Conv2d) else None),
        "pretrained",
    )
    assert same_state(loaded, model)


def test_register_init_adds_a_usable_initializer(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_init("zeros-test", description="all zeros (test)", needs_source=False)
    def zeros(ctx, *, value: float = 0.0):
        return {k: torch.full_like(v, value) for k, v in ctx.random_state.items()}

    assert timm_transfusion.list_inits()["zeros-test"] == "all zeros (test)"
    model = timm.create_model("cbr_small", init="zeros-test", init_value=2.0)
    assert torch.all(model.fc.weight == 2.0)
    with pytest.raises(timm_transfusion.init.InitError, match="already registered"):
        register_init("zeros-test", description="again")


def test_offline_default_source_says_how_to_pass_a_local_file(tmp_path):
    code = (
        "import timm, timm_transfusion\n"
        "try:\n    timm.create_model('resnet18', init='meanvar')\n"
        "except timm_transfusion.init.SourceUnavailableError as e:\n    print('ERROR', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path), TORCH_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert "ERROR" in result.stdout, result.stderr
    assert "resnet18" in result.stdout and "init_source='path/to/weights.safetensors'" in result.stdout


@pytest.mark.parametrize(
    ("kwargs", "error", "fragments"),
    [
        (dict(init="gabor"), "UnknownInitError", ["'gabor'", "meanvar", "transfusion-{k}"]),
        (dict(init="transfusion-6"), "BlockIndexError", ["transfusion-6", "0..5"]),
        (dict(init="meanvar", init_bn="copy"), "InitOptionError", ["'copy'", "identity, transfer, meanvar"]),
        (dict(init="meanvar", init_gain=2), "InitOptionError", ["'init_gain'", "bn, stats"]),
        (dict(init="meanvar", init_source="missing/weights.safetensors"), "SourceError", ["missing/weights"]),
        (dict(init="meanvar", init_source="not_a_model_or_file"), "SourceError", ["not_a_model_or_file"]),
        (dict(init="meanvar", pretrained=True), "InitError", ["pretrained=True"]),
        (dict(init="random", init_source="w.pth"), "InitOptionError", ["'random'", "drop the init source"]),
        (dict(init="meanvar", init_source="resnet18.nope"), "SourceError", ["'resnet18.nope'", "nope"]),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, error, fragments, weights):
    kwargs.setdefault("init_source", weights)
    with pytest.raises(getattr(timm_transfusion.init, error)) as caught:
        timm.create_model("mobilenetv1_025", **kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_mismatched_source_names_the_first_mismatches(weights):
    with pytest.raises(timm_transfusion.init.SourceMismatchError) as caught:
        timm.create_model("cbr_small", init="meanvar", init_source=weights)
    assert "missing from the source" in str(caught.value) and "'stem.conv.weight'" in str(caught.value)
    resized = {k: v[:4] if k == "conv_stem.weight" else v for k, v in load_file(weights).items()}
    with pytest.raises(
        timm_transfusion.init.SourceMismatchError, match=r"'conv_stem.weight' is \(8, 3, 3, 3\)"
    ):
        timm.create_model("mobilenetv1_025", init="transfusion-0", init_source=resized)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 10])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_corrupt_weights_file_is_a_clear_error(tmp_path, content, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(content)
    with pytest.raises(timm_transfusion.init.SourceError, match="could not read weights file"):
        timm.create_model("cbr_small", init="meanvar", init_source=str(path))


def test_model_without_group_matcher_refuses_transfusion():
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

    model = Plain()
    with pytest.raises(timm_transfusion.init.GroupMatcherError, match="no group_matcher"):
        apply_init(model, "transfusion-0", source=model.state_dict())


def test_checkpoint_without_tensors_is_rejected(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(timm_transfusion.init.SourceError, match="not a state dict of tensors: 'epoch'"):
        timm.create_model("cbr_small", init="pretrained", init_source=str(path))
