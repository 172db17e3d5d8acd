"""Normalization layers as data: every norm-like class of timm.layers is classified, and each entry's
identity is what the layer computes as its identity (timm's own reset values; GRN passes its input)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest
import timm
import timm.layers
import torch
from timm.layers.grn import GlobalResponseNorm
from torch import nn

from timm_transfusion.init.norms import NORM_IDENTITIES, norm_identity

# Classes of timm.layers named like a norm that are containers: their norm child is classified instead.
CONTAINERS = {
    "ClNormMlpClassifierHead",
    "NormMlpClassifierHead",
    "ConvNormAct",
    "ConvNormActAa",
    "SeparableConvNormAct",
    "GlobalResponseNormMlp",
}
CHANNELS = 32


def timm_layer_classes() -> dict[str, type[nn.Module]]:
    """Every nn.Module class that timm.layers defines (or re-exports from torchvision), by name."""
    classes = {}
    for info in pkgutil.iter_modules(timm.layers.__path__):
        module = importlib.import_module(f"timm.layers.{info.name}")
        for name, cls in vars(module).items():
            if (
                inspect.isclass(cls)
                and issubclass(cls, nn.Module)
                and cls.__module__.startswith(("timm.layers", "torchvision.ops"))
            ):
                classes[name] = cls
    return classes


NORM_LIKE = sorted(
    name for name in timm_layer_classes() if re.search(r"Norm|Abn", name) and name not in CONTAINERS
)
TABLE_CLASSES = sorted(NORM_IDENTITIES, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def construct(cls: type[nn.Module]) -> nn.Module:
    """An instance with CHANNELS features (GroupNorm-style classes take groups as their other argument)."""
    if cls is nn.GroupNorm:
        return cls(4, CHANNELS)
    if cls is nn.modules.batchnorm._NormBase:
        return nn.BatchNorm2d(CHANNELS)
    return cls(CHANNELS)


def test_the_audit_finds_the_classes_the_issue_names():
    assert {
        "RmsNormFp32",
        "EvoNorm2dS0",
        "EvoNorm2dS0a",
        "FilterResponseNormTlu2d",
        "GlobalResponseNorm",
    } <= set(NORM_LIKE)


@pytest.mark.parametrize("name", NORM_LIKE)
def test_every_norm_like_timm_layer_is_in_the_table_with_all_its_tensors(name):
    cls = timm_layer_classes()[name]
    if cls.__name__ == "InplaceAbn":  # needs the inplace_abn package to run, not to be built
        layer = cls(CHANNELS)
    else:
        with torch.device("meta"):
            layer = construct(cls)
    identity = norm_identity(layer)
    assert identity is not None, f"{name} normalizes but has no entry in NORM_IDENTITIES"
    own = [key for key, _ in [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]]
    assert own and set(own) <= set(identity), f"{name}: {own} vs {sorted(identity)}"


def _forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer on NCHW input, or on channels-last input for layers that normalize the last dim."""
    try:
        return layer(x)
    except (RuntimeError, ValueError):
        return layer(x.permute(0, 2, 3, 1))


@pytest.mark.parametrize("cls", TABLE_CLASSES, ids=lambda cls: cls.__name__)
def test_identity_values_make_a_perturbed_layer_compute_what_a_fresh_one_does(cls):
    if cls.__name__ == "InplaceAbn":
        pytest.importorskip("inplace_abn")
    fresh, layer = construct(cls).eval(), construct(cls).eval()
    identity = norm_identity(layer)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in [*layer.parameters(recurse=False), *layer.buffers(recurse=False)]:
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
        x = torch.randn(2, CHANNELS, 4, 4, generator=generator)
        perturbed = _forward(layer, x)
        for key, tensor in [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]:
            tensor.fill_(identity[key])
        assert not torch.allclose(perturbed, _forward(fresh, x))
        torch.testing.assert_close(_forward(layer, x), _forward(fresh, x), rtol=0, atol=0)


def test_global_response_norm_identity_passes_its_input_unchanged():
    layer = GlobalResponseNorm(CHANNELS)
    with torch.no_grad():
        for key, tensor in layer.named_parameters():
            tensor.fill_(norm_identity(layer)[key])
    x = torch.randn(2, 4, 4, CHANNELS)
    assert torch.equal(layer(x), x)
    assert norm_identity(layer) == {"weight": 0.0, "bias": 0.0}


def test_subclasses_share_their_base_entry_and_containers_have_none():
    from timm.models.metaformer import LayerNorm2dNoBias

    assert norm_identity(LayerNorm2dNoBias(CHANNELS)) == norm_identity(nn.LayerNorm(CHANNELS))
    assert norm_identity(timm.layers.ConvNormAct(3, CHANNELS, 3)) is None
    assert norm_identity(nn.Conv2d(3, 3, 1)) is None


# Regression: meanvar on the real timm models whose norms the old class-name regex got wrong


def _perturbed_source(name: str, **kwargs) -> nn.Module:
    source = timm.create_model(name, **kwargs)
    with torch.no_grad():
        for tensor in source.state_dict(keep_vars=True).values():
            if tensor.is_floating_point():
                tensor.mul_(1.3).add_(0.2)
    return source


@pytest.mark.parametrize(
    ("name", "kwargs", "class_name", "expected"),
    [
        ("deepseek_vit_412m", {"depth": 1, "img_size": 56}, "RmsNormFp32", {"weight": 1.0}),
        ("test_efficientnet_evos", {}, "EvoNorm2dS0", {"weight": 1.0, "bias": 0.0, "v": 1.0}),
        ("regnetz_b16_evos", {}, "EvoNorm2dS0a", {"weight": 1.0, "bias": 0.0, "v": 1.0}),
        ("resnetv2_50d_frn", {}, "FilterResponseNormTlu2d", {"weight": 1.0, "bias": 0.0, "tau": 0.0}),
        ("convnextv2_atto", {}, "GlobalResponseNorm", {"weight": 0.0, "bias": 0.0}),
    ],
)
def test_meanvar_sets_each_timm_norm_class_to_its_identity(name, kwargs, class_name, expected):
    source = _perturbed_source(name, **kwargs)
    model = timm.create_model(name, init="meanvar", init_source=source, init_seed=0, **kwargs)
    layers = [module for module in model.modules() if type(module).__name__ == class_name]
    assert layers, f"{name} has no {class_name}"
    checked = set()
    for layer in layers:
        for key, tensor in [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]:
            assert torch.all(tensor == expected[key]), f"{class_name}.{key}"
            checked.add(key)
    assert checked == set(expected)
