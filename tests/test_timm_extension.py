"""`timm.create_model(..., init=...)` through timm's entrypoint table: import order, late models, switch-off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import timm
import timm.models
import torch
from safetensors.torch import save, save_file

import timm_transfusion
from timm_transfusion.init import extension

FAMILIES = [
    ("resnet18", {"num_classes": 7}),
    ("mobilenetv3_small_050", {}),
    ("convnext_atto", {"drop_path_rate": 0.1}),
    ("vit_tiny_patch16_224", {"init_values": 1e-5}),
    ("cbr_tiny", {"num_classes": 3}),
]


def state_bytes(model: torch.nn.Module) -> bytes:
    """The model's state dict serialized: equal bytes mean equal keys, dtypes, shapes and values."""
    return save({k: v.contiguous() for k, v in model.state_dict().items()})


def created(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, **kwargs)


@pytest.fixture
def switched_off():
    timm_transfusion.disable_timm_init()
    yield
    timm_transfusion.enable_timm_init()


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_create_model_bound_before_the_import_takes_init():
    out = run_python(
        """
        from timm import create_model
        from timm.models import create_model as models_create_model
        import torch
        import timm_transfusion
        a = create_model("resnet18", init="random", init_seed=4, num_classes=3)
        b = models_create_model("resnet18", init="meanvar", init_source=a, init_seed=1, num_classes=3)
        c = timm_transfusion.create_model("resnet18", init="random", init_seed=4, num_classes=3)
        assert all(torch.equal(a.state_dict()[k], v) for k, v in c.state_dict().items())
        assert not torch.equal(a.conv1.weight, b.conv1.weight)
        print("ok", a.num_classes, b.num_classes)
        """
    )
    assert out.split() == ["ok", "3", "3"]


def test_a_model_registered_after_the_import_takes_init():
    out = run_python(
        """
        import timm, timm_transfusion, torch
        from timm.models import register_model
        from timm.models.resnet import BasicBlock, _create_resnet

        @register_model
        def late_resnet(pretrained=False, **kwargs):
            return _create_resnet("late_resnet", pretrained, block=BasicBlock, layers=(1, 1, 1, 1), **kwargs)

        source = timm.create_model("late_resnet", num_classes=2)
        model = timm.create_model("late_resnet", init="pretrained", init_source=source, num_classes=2)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())
        print("ok")
        """
    )
    assert out.strip().endswith("ok")


def test_no_timm_name_is_rebound_and_nothing_poses_as_timm():
    from timm.models import _factory

    assert timm.create_model is timm.models.create_model is _factory.create_model
    assert timm_transfusion.create_model.__module__ == "timm_transfusion.init.factory"
    entrypoint = timm.models.model_entrypoint("resnet18")
    assert isinstance(entrypoint, extension.InitEntrypoint)
    assert repr(entrypoint).startswith("timm_transfusion.InitEntrypoint('resnet18'")
    assert entrypoint.fn is timm.models.resnet.resnet18


@pytest.mark.parametrize(("name", "kwargs"), FAMILIES)
def test_without_init_every_call_is_stock_timm(name, kwargs, switched_off):
    stock = created(name, **kwargs)
    timm_transfusion.enable_timm_init()
    ours = created(name, **kwargs)
    assert state_bytes(ours) == state_bytes(stock)
    assert ours.pretrained_cfg == stock.pretrained_cfg
    assert timm.models.get_model_args(ours) == timm.models.get_model_args(stock)


def test_pretrained_cfg_overlay_features_only_and_checkpoint_path_are_stock(tmp_path, switched_off):
    weights, checkpoint = tmp_path / "weights.safetensors", tmp_path / "checkpoint.safetensors"
    save_file(created("resnet18", seed=1).state_dict(), weights)
    save_file(created("resnet18", seed=2, num_classes=4).state_dict(), checkpoint)
    calls = {
        "overlay": dict(pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)), num_classes=4),
        "features": dict(features_only=True, out_indices=(1, 3)),
        "features_overlay": dict(
            pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)), features_only=True
        ),
        "checkpoint": dict(checkpoint_path=str(checkpoint), num_classes=4),
    }
    stock = {label: created("resnet18", seed=5, **kwargs) for label, kwargs in calls.items()}
    timm_transfusion.enable_timm_init()
    for label, kwargs in calls.items():
        ours = created("resnet18", seed=5, **kwargs)
        assert type(ours) is type(stock[label]), label
        assert state_bytes(ours) == state_bytes(stock[label]), label
        assert ours.pretrained_cfg == stock[label].pretrained_cfg, label


def test_switched_off_by_environment_timm_is_untouched():
    code = """
        import hashlib, sys, timm, torch
        from safetensors.torch import save
        from timm.models import _registry
        {extra}
        torch.manual_seed(0)
        model = timm.create_model("convnext_atto", features_only=True, out_indices=(0, 2))
        table = _registry._model_entrypoints
        print(type(table).__name__, table["resnet18"] is timm.models.resnet.resnet18)
        print(hashlib.sha256(save({{k: v.contiguous() for k, v in model.state_dict().items()}})).hexdigest())
        """
    switched = run_python(code.format(extra="import timm_transfusion"), TIMM_TRANSFUSION_TIMM_INIT="0")
    stock = run_python(code.format(extra="assert 'timm_transfusion' not in sys.modules"))
    assert switched.splitlines()[0] == "dict True"
    assert switched == stock


def test_switched_off_init_is_refused_by_timm_and_the_explicit_api_still_works(switched_off):
    assert not timm_transfusion.timm_init_enabled()
    with pytest.raises(TypeError, match="init"):
        timm.create_model("resnet18", init="random")
    model = timm_transfusion.create_model("resnet18", init="random", init_seed=2, num_classes=3)
    assert state_bytes(model) == state_bytes(created("resnet18", seed=2, num_classes=3))


def test_init_keywords_are_not_exported_with_the_model(tmp_path):
    model = timm.create_model("resnet18", init="random", init_seed=0, num_classes=3)
    assert "init" in model._model_args  # timm records every factory keyword after the entrypoint returned
    timm.models.save_for_hf(model, tmp_path / "export")
    assert '"init' not in (tmp_path / "export" / "config.json").read_text()
    reloaded = run_python(
        f"""
        import sys, timm
        m = timm.create_model("local-dir:{tmp_path / "export"}", pretrained=True)
        assert "timm_transfusion" not in sys.modules
        print(m.num_classes)
        """
    )
    assert reloaded.strip() == "3"


def test_init_keywords_without_init_are_refused():
    with pytest.raises(timm_transfusion.init.InitError, match="init_seed need init"):
        timm.create_model("resnet18", init_seed=3)
