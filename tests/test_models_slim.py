"""Slim hybrids: widths and parameter counts by formula, the timm model API, transfusion-k from the full
model's weights, stock-timm reload, FLOPs, and errors for bad reuse / width."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from hub_server import LocalHub
from safetensors.torch import load_file
from timm.models import create_model as stock_create_model
from timm.models import resolve_pretrained_cfg

import timm_transfusion
from timm_transfusion.cli import main as cli_main
from timm_transfusion.hub import load_run_folder, render_card
from timm_transfusion.hub.card import is_plugin_architecture, usage_snippet
from timm_transfusion.hub.layout import collect_files
from timm_transfusion.init import BlockIndexError, InitOptionError, apply_init, block_groups
from timm_transfusion.models import SLIM_VARIANTS, SlimError, slim, slim_spec_of
from timm_transfusion.models.costs import count_macs, count_parameters
from timm_transfusion.models.mobilenetv1 import DEFAULT_CHANNELS
from timm_transfusion.models.slim import init_conflict, stock_export

# group widths each registered variant must have: the base's, then round_to_8(width × base) from group reuse+1
EXPECTED_WIDTHS = {
    "resnet50_slim2_w25": (64, 128, 64, 128),  # planes; resnet50: 64-128-256-512
    "resnet50_slim2_w50": (64, 128, 128, 256),
    "resnet18_slim2_w50": (64, 128, 128, 256),
    "mobilenetv1_025_slim3_w50": (16, 32, 64, 64, 128),  # mobilenetv1_025: 16-32-64-128-256
    "cbr_large_wide_slim1_w50": (64, 128, 128, 256),  # stem 64, then 128-256-512
}
RESNET_LAYOUT = {"resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet18": ("basic", (2, 2, 2, 2))}
MOBILENET_STAGES = ((1, 1), (2, 2), (2, 2), (6, 2), (2, 2))  # (blocks, stride) of MobileNet-V1


# -- the layer formulas -------------------------------------------------------------------------------------
def resnet_params(base: str, planes: tuple[int, ...], num_classes: int = 1000) -> int:
    """7×7 stem conv + BN, then Bottleneck (1×1, 3×3, 1×1 ×4) or Basic (3×3, 3×3) blocks, 1×1 shortcut
    conv + BN where the shape changes, linear head."""
    block, layers = RESNET_LAYOUT[base]
    expansion = 4 if block == "bottleneck" else 1
    total, inplanes = 3 * 64 * 49 + 2 * 64, 64
    for stage, (blocks, p) in enumerate(zip(layers, planes, strict=False)):
        for b in range(blocks):
            if block == "bottleneck":
                total += inplanes * p + 2 * p + 9 * p * p + 2 * p + p * 4 * p + 2 * 4 * p
            else:
                total += 9 * inplanes * p + 2 * p + 9 * p * p + 2 * p
            stride = 2 if stage > 0 and b == 0 else 1
            if b == 0 and (stride != 1 or inplanes != p * expansion):
                total += inplanes * p * expansion + 2 * p * expansion
            inplanes = p * expansion
    return total + inplanes * num_classes + num_classes


def cbr_params(widths: tuple[int, ...], kernel: int = 7, num_classes: int = 1000) -> int:
    chans = (3, *widths)
    convs = sum(
        kernel * kernel * c_in * c_out + 2 * c_out for c_in, c_out in zip(chans[:-1], chans[1:], strict=False)
    )
    return convs + widths[-1] * num_classes + num_classes


def mobilenet_params(channels: tuple[int, ...], num_classes: int = 1000) -> int:
    """3×3 stem 3→8 + BN, then per block a 3×3 depthwise conv + BN and a 1×1 pointwise conv + BN."""
    total, c_in = 27 * 8 + 2 * 8, 8
    for (blocks, _), c in zip(MOBILENET_STAGES, channels, strict=False):
        for _ in range(blocks):
            total += 9 * c_in + 2 * c_in + c_in * c + 2 * c
            c_in = c
    return total + c_in * num_classes + num_classes


def group_widths(model: torch.nn.Module) -> tuple[int, ...]:
    """Widths of each block group, read from the layers themselves."""
    if hasattr(model, "layer1"):
        return tuple(getattr(model, f"layer{i}")[0].conv1.out_channels for i in range(1, 5))
    if hasattr(model, "stages"):
        return (model.stem.conv.out_channels, *(stage.conv.out_channels for stage in model.stages))
    return tuple(stage[-1].conv_pw.out_channels for stage in model.blocks)


def formula_params(name: str, widths: tuple[int, ...]) -> int:
    base = SLIM_VARIANTS[name].base if name in SLIM_VARIANTS else name
    if base.startswith("resnet"):
        return resnet_params(base, widths)
    if base.startswith("cbr"):
        return cbr_params(widths)
    return mobilenet_params(widths)


# -- widths, parameter counts and the timm API -------------------------------------------------------------
def test_the_formulas_reproduce_the_bases() -> None:
    for name, widths in [
        ("resnet50", (64, 128, 256, 512)),
        ("resnet18", (64, 128, 256, 512)),
        ("mobilenetv1_025", DEFAULT_CHANNELS),
        ("cbr_large_wide", (64, 128, 256, 512)),
    ]:
        model = timm.create_model(name)
        assert group_widths(model) == widths
        assert count_parameters(model) == formula_params(name, widths), name


@pytest.mark.parametrize("name", sorted(SLIM_VARIANTS))
def test_registered_variant_has_the_slim_widths_and_the_formula_parameter_count(name: str) -> None:
    assert timm.is_model(name)
    model = timm.create_model(name)
    assert group_widths(model) == EXPECTED_WIDTHS[name]
    assert count_parameters(model) == formula_params(name, EXPECTED_WIDTHS[name])
    base = timm.create_model(SLIM_VARIANTS[name].base)
    assert count_parameters(model) < count_parameters(base)


@pytest.mark.parametrize("name", sorted(SLIM_VARIANTS))
def test_registered_variant_has_the_timm_model_api(name: str) -> None:
    model = timm.create_model(name, num_classes=3).eval()
    spec = slim_spec_of(model)
    assert model.pretrained_cfg["architecture"] == name
    assert timm.models.get_pretrained_cfg(f"{name}.untrained") is not None
    base_groups = block_groups(timm.create_model(spec.base))
    assert block_groups(model).num_blocks == base_groups.num_blocks
    images = torch.randn(2, 3, 64, 64)
    final, intermediates = model.forward_intermediates(images)
    assert [t.shape[1] for t in intermediates] == [info["num_chs"] for info in model.feature_info]
    assert model.forward_head(final).shape == (2, 3)
    features = timm.create_model(name, features_only=True)
    assert [t.shape[1] for t in features(images)] == features.feature_info.channels()
    assert features.feature_info.channels()[-1] == model.num_features


def test_slim_returns_the_registered_variant_or_the_base_with_slim_widths() -> None:
    registered = slim("resnet50", reuse=2, width=0.25, num_classes=4)
    assert registered.pretrained_cfg["architecture"] == "resnet50_slim2_w25"
    assert registered.num_classes == 4
    other = slim("resnet50", reuse=1, width=0.3)
    assert other.pretrained_cfg["architecture"] == "resnet50"
    assert group_widths(other) == (64, 40, 80, 152)  # 0.3 × 128, 256, 512 rounded to multiples of 8
    assert count_parameters(other) == resnet_params("resnet50", (64, 40, 80, 152))
    assert slim_spec_of(other).reuse == 1
    cbr = slim("cbr_small", reuse=0, width=0.5)
    assert group_widths(cbr) == (32, 32, 64, 128)
    assert count_parameters(cbr) == cbr_params((32, 32, 64, 128))


def test_apply_init_copies_the_reused_groups_of_an_unregistered_combination() -> None:
    torch.manual_seed(6)
    full = timm.create_model("resnet18")
    torch.manual_seed(0)
    model = apply_init(slim("resnet18", reuse=1, width=0.3), "transfusion-1+meanvar", source=full, seed=0)
    torch.manual_seed(0)
    random = apply_init(slim("resnet18", reuse=1, width=0.3), "random", seed=0)
    assert group_widths(model) == (64, 40, 80, 152)
    state, source = model.state_dict(), full.state_dict()
    reused, upper = _reused_and_upper_keys(model, 1)
    assert all(torch.equal(state[key], source[key]) for key in reused)
    assert torch.equal(model.layer4[0].bn1.weight, torch.ones(152))  # Mean Var: norm layers identity
    assert not torch.equal(model.layer4[0].conv1.weight, random.layer4[0].conv1.weight)
    assert torch.equal(model.fc.weight, random.fc.weight)  # the head stays as timm's seeded init


def test_mobilenet_channels_argument_builds_what_timms_generator_builds() -> None:
    generated = timm.create_model("mobilenetv1_025").eval()
    explicit = timm.create_model("mobilenetv1_025", channels=DEFAULT_CHANNELS).eval()
    assert str(explicit) == str(generated)
    explicit.load_state_dict(generated.state_dict())
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(explicit(images), generated(images))


# -- bad values ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reuse", [-1, 4, 1.5, True, "2"])
def test_reuse_out_of_range_names_the_valid_range(reuse) -> None:
    with pytest.raises(SlimError, match=r"reuse=.* must be an integer in 0\.\.3"):
        slim("resnet50", reuse=reuse, width=0.5)


@pytest.mark.parametrize("width", [0, -0.25, 1.5, "0.5", None])
def test_width_out_of_range_names_the_valid_range(width) -> None:
    with pytest.raises(SlimError, match=r"width=.* a number in \(0, 1\]"):
        slim("mobilenetv1_025", reuse=2, width=width)


def test_an_unsupported_base_names_the_supported_families() -> None:
    with pytest.raises(SlimError, match="vit_tiny_patch16_224.*Supported bases: timm's ResNets"):
        slim("vit_tiny_patch16_224", reuse=1, width=0.5)
    with pytest.raises(SlimError, match="unknown base model 'resnet51'"):
        slim("resnet51", reuse=1, width=0.5)


def test_transfusion_above_the_reused_groups_and_shape_bound_options_are_refused() -> None:
    full = timm.create_model("resnet18")
    with pytest.raises(BlockIndexError, match=r"k must be in 0\.\.2"):
        timm.create_model("resnet18_slim2_w50", init="transfusion-3", init_source=full)
    for option in (dict(init_stats="channel"), dict(init_bn="transfer")):
        with pytest.raises(InitOptionError, match="stats='tensor'"):
            timm.create_model("resnet18_slim2_w50", init="transfusion-2+meanvar", init_source=full, **option)


def test_init_conflict_names_the_inits_a_slim_model_cannot_take_before_training() -> None:
    for init in ("pretrained", "transfusion-4", "transfusion-4+meanvar"):
        reason = init_conflict("mobilenetv1_025_slim3_w50", init)
        assert reason and "transfusion-0..3" in reason
    for init in ("random", "meanvar", "transfusion-3", "transfusion-0+meanvar"):
        assert init_conflict("mobilenetv1_025_slim3_w50", init) is None
    assert init_conflict("mobilenetv1_025", "pretrained") is None
    full = timm.create_model("mobilenetv1_025")
    for init in ("pretrained", "transfusion-4"):  # what the check predicts, the init itself refuses
        with pytest.raises(timm_transfusion.init.InitError):
            timm.create_model("mobilenetv1_025_slim3_w50", init=init, init_source=full)


# -- transfusion-k from the full model ----------------------------------------------------------------------
def _reused_and_upper_keys(model: torch.nn.Module, reuse: int) -> tuple[set[str], set[str]]:
    groups = block_groups(model)
    reused = {key for key, group in groups.group_of.items() if group <= reuse}
    upper = {key for key, group in groups.group_of.items() if reuse < group <= groups.num_blocks}
    return reused, upper


@pytest.mark.parametrize("name", ["resnet18_slim2_w50", "cbr_large_wide_slim1_w50"])
def test_transfusion_k_copies_the_reused_groups_from_the_full_model_and_leaves_the_rest_random(name) -> None:
    spec = SLIM_VARIANTS[name]
    torch.manual_seed(1)
    full = timm.create_model(spec.base)
    source = full.state_dict()
    model = timm.create_model(
        name, init=f"transfusion-{spec.reuse}", init_source=full, init_seed=0, num_classes=5
    )
    random = timm.create_model(name, init="random", init_seed=0, num_classes=5)
    state, random_state = model.state_dict(), random.state_dict()
    reused, upper = _reused_and_upper_keys(model, spec.reuse)
    assert reused and upper
    assert all(torch.equal(state[key], source[key]) for key in reused)
    assert all(torch.equal(state[key], random_state[key]) for key in upper | {"fc.weight", "fc.bias"})
    assert any(state[key].shape != source[key].shape for key in upper)


def test_transfusion_k_copies_the_real_imagenet_mobilenet_into_its_slim_variant(
    mobilenet_weights: Path,
) -> None:
    real = load_file(str(mobilenet_weights))
    model = timm.create_model(
        "mobilenetv1_025_slim3_w50", init="transfusion-3", init_source=str(mobilenet_weights), num_classes=2
    )
    state = model.state_dict()
    reused, upper = _reused_and_upper_keys(model, 3)
    assert {key.split(".")[0] + "." + key.split(".")[1] for key in reused if key.startswith("blocks")} == {
        "blocks.0",
        "blocks.1",
        "blocks.2",
    }
    assert all(torch.equal(state[key], real[key]) for key in reused)
    assert all(not torch.equal(state[key], real[key]) for key in upper if key.endswith("conv_pw.weight"))


def test_transfusion_k_meanvar_draws_the_thin_top_from_the_full_width_statistics() -> None:
    torch.manual_seed(2)
    full = timm.create_model("resnet18")
    # distinctive statistics, far from any random init: scaled ×3 and shifted by 0.01
    source = {k: v * 3 + 0.01 if v.is_floating_point() else v for k, v in full.state_dict().items()}
    model = timm.create_model(
        "resnet18_slim2_w50", init="transfusion-2+meanvar", init_source=source, init_seed=0, num_classes=5
    )
    state = model.state_dict()
    reused, upper = _reused_and_upper_keys(model, 2)
    assert all(torch.equal(state[key], source[key]) for key in reused)
    for key in ("layer3.0.conv1.weight", "layer4.1.conv2.weight", "layer4.0.downsample.0.weight"):
        drawn, full_width = state[key].double(), source[key].double()
        assert drawn.shape != full_width.shape
        tolerance = 6 * full_width.std() / drawn.numel() ** 0.5
        assert abs(drawn.mean() - full_width.mean()) < tolerance
        assert abs(drawn.std() / full_width.std() - 1) < 0.05
    assert torch.equal(model.layer4[0].bn1.weight, torch.ones(256))
    assert torch.equal(model.layer4[0].bn1.running_var, torch.ones(256))


def test_default_source_of_a_slim_resnet_is_what_the_full_base_loads(monkeypatch) -> None:
    from timm_transfusion.init import source as source_module

    torch.manual_seed(3)
    full = stock_create_model("resnet18").state_dict()
    asked = []

    def pretrained_state(model_name, model_args, **kwargs):
        asked.append((model_name, model_args, kwargs))
        return full

    monkeypatch.setattr(source_module, "_pretrained_state", pretrained_state)
    model = timm.create_model("resnet18_slim2_w50", init="transfusion-2", num_classes=5)
    assert asked == [("resnet18", {"in_chans": 3}, {})]
    reused, _ = _reused_and_upper_keys(model, 2)
    assert all(torch.equal(model.state_dict()[key], full[key]) for key in reused)


HUB_DEFAULT_SOURCE = """
import sys, torch, timm, timm_transfusion
from timm.models import save_for_hf
from huggingface_hub import HfApi
repo, folder, token = sys.argv[1:4]
torch.manual_seed(5)
full = timm.create_model("resnet18")
save_for_hf(full, folder, safe_serialization=True)
HfApi(token=token).create_repo(repo)
HfApi(token=token).upload_folder(repo_id=repo, folder_path=folder)
model = timm.create_model("resnet18_slim2_w50", init="transfusion-2", init_seed=0, num_classes=5)
state, source = model.state_dict(), full.state_dict()
print(all(torch.equal(state[k], source[k]) for k in state if k.startswith(("conv1", "bn1", "layer1", "layer2"))))
"""


def test_default_source_downloads_the_full_bases_pretrained_weights_from_the_hub(tmp_path: Path) -> None:
    """resnet18_slim2_w50 without init_source loads resnet18's default weights, timm/resnet18.a1_in1k, through
    timm's Hub loader (here from the local Hub server, under that very repo id)."""
    repo = resolve_pretrained_cfg("resnet18").hf_hub_id
    token = "hf_SlimDefaultSourceToken"
    hub = LocalHub(tokens={token: repo.split("/")[0]}).start()
    try:
        env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1")
        env.pop("HF_HUB_OFFLINE", None)
        result = subprocess.run(
            [sys.executable, "-c", HUB_DEFAULT_SOURCE, repo, str(tmp_path / "full"), token],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        hub.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "True"


# -- stock timm reloads a trained slim ResNet -----------------------------------------------------------------
STOCK_LOAD = """
import json, sys, torch, timm
model = timm.create_model(sys.argv[1], pretrained=True).eval()
torch.manual_seed(0)
with torch.no_grad():
    logits = model(torch.randn(2, 3, 32, 32))
print(json.dumps({"plugin_imported": "timm_transfusion" in sys.modules, "class": type(model).__name__,
                  "widths": [getattr(model, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)],
                  "logits": logits.tolist()}))
"""
PUSH = """
import sys
from timm_transfusion.hub import push_to_hub
push_to_hub(sys.argv[1], sys.argv[2], token=sys.argv[3])
"""


def _stock_env(**extra: str) -> dict[str, str]:
    """A fresh interpreter that sees stock timm only: no PYTHONPATH to this checkout, offline unless told."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def trained_slim_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (short) run of the training code: resnet18_slim2_w50, transfusion-2 from a full resnet18."""
    from timm_transfusion.train import TrainConfig, train

    root = tmp_path_factory.mktemp("slim")
    torch.manual_seed(4)
    timm.models.save_for_hf(timm.create_model("resnet18"), root / "full", safe_serialization=True)
    train(
        TrainConfig(
            model="resnet18_slim2_w50",
            dataset="synthetic:fundus:train=32,val=16,test=16",
            output=str(root / "run"),
            init="transfusion-2",
            init_source=f"local-dir:{root / 'full'}",
            max_steps=2,
            eval_every=2,
            batch_size=16,
            img_size=32,
            progress=False,
            log_with="none",
        )
    )
    return root / "run"


def _expected_logits(run: Path) -> list:
    model = stock_create_model(f"local-dir:{run}", pretrained=True).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        return model(torch.randn(2, 3, 32, 32)).tolist()


def test_run_folder_of_a_slim_resnet_names_stock_resnet_with_its_widths(trained_slim_run: Path) -> None:
    config = json.loads((trained_slim_run / "config.json").read_text())
    assert config["architecture"] == "resnet18"
    assert config["model_args"]["channels"] == [64, 128, 128, 256]
    assert not is_plugin_architecture(config["architecture"])
    assert "import timm_transfusion" not in usage_snippet(
        "alice/slim", architecture=config["architecture"], revision=None, multilabel=False
    )


def test_card_names_the_slim_model_and_the_stock_architecture_it_is_saved_as(trained_slim_run: Path) -> None:
    run = load_run_folder(trained_slim_run)
    card = render_card(run, repo_id="alice/retina-slim", files=collect_files(run))
    assert (
        "resnet18_slim2_w50 (stock timm `resnet18` with channels=[64, 128, 128, 256]) image classifier"
        in str(card)
    )


def test_stock_timm_reloads_a_trained_slim_resnet_from_its_run_folder(trained_slim_run: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", STOCK_LOAD, f"local-dir:{trained_slim_run}"],
        env=_stock_env(HF_HUB_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["plugin_imported"] is False
    assert loaded["class"] == "ResNet"
    assert loaded["widths"] == [64, 128, 128, 256]
    assert torch.allclose(torch.tensor(loaded["logits"]), torch.tensor(_expected_logits(trained_slim_run)))


def test_stock_timm_loads_a_pushed_slim_resnet_from_the_hub(trained_slim_run: Path, tmp_path: Path) -> None:
    token = "hf_SlimPushToken"
    hub = LocalHub(tokens={token: "alice"}).start()
    try:
        env = _stock_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1")
        env.pop("HF_HUB_OFFLINE", None)
        pushed = subprocess.run(
            [sys.executable, "-c", PUSH, str(trained_slim_run), "alice/retina-slim", token],
            env={**env, "PYTHONPATH": str(Path(timm_transfusion.__file__).parents[1])},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        result = subprocess.run(
            [sys.executable, "-c", STOCK_LOAD, "hf-hub:alice/retina-slim"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        hub.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["plugin_imported"] is False
    assert torch.allclose(torch.tensor(loaded["logits"]), torch.tensor(_expected_logits(trained_slim_run)))


def test_slim_models_stock_timm_cannot_build_keep_their_name_and_say_so_in_the_card() -> None:
    for name in ("cbr_large_wide_slim1_w50", "mobilenetv1_025_slim3_w50"):
        assert stock_export(timm.create_model(name)) is None
        snippet = usage_snippet("alice/x", architecture=name, revision=None, multilabel=False)
        assert "import timm_transfusion" in snippet
        assert "stock timm cannot build" in snippet
    assert stock_export(timm.create_model("resnet50")) is None  # not slim: saved as it is


# -- costs --------------------------------------------------------------------------------------------------
def test_resnet50_at_224_px_costs_the_published_4_1_gmacs() -> None:
    assert 4.05e9 < count_macs("resnet50", img_size=224) < 4.15e9


def test_flop_counter_matches_the_cbr_layer_formula() -> None:
    """Each CBR stage is a k×k conv at the resolution of its input (stride 1), then a 3×3/2 max-pool."""
    size, widths, macs = 64, (32, 64, 128, 256), 0
    chans = (3, *widths)
    for c_in, c_out in zip(chans[:-1], chans[1:], strict=False):
        macs += 49 * c_in * c_out * size * size
        size = (size + 1) // 2
    macs += widths[-1] * 1000
    assert count_macs("cbr_small", img_size=64) == macs


def test_slim_variants_cost_less_than_their_base() -> None:
    for name, spec in SLIM_VARIANTS.items():
        assert count_macs(name, img_size=128) < count_macs(spec.base, img_size=128), name


def test_models_command_prints_the_cost_table(capsys) -> None:
    assert cli_main(["models", "--costs", "--no-measure", "--models", "resnet50,resnet50_slim2_w25"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    for row, name in zip(rows, ("resnet50", "resnet50_slim2_w25"), strict=False):
        params, gmacs = count_parameters(timm.create_model(name)), count_macs(name, img_size=224) / 1e9
        assert row.startswith(f"| `{name}` | {params:,} | {gmacs:.3f} | 224 |")


def test_an_unregistered_slim_model_refuses_init_and_says_how() -> None:
    with pytest.raises(SlimError, match="apply_init"):
        slim("resnet18", reuse=1, width=0.3, init="random")
