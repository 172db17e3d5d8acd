"""Slim hybrids (Raghu et al. 2019, section 6): the lower block groups of a model, a much thinner top.

`slim(base, reuse=k, width=w)` is `base` with its stem and first k block groups unchanged and every
block group above at `w` × its width, rounded to a multiple of 8 (timm's `make_divisible`). The lower
part has the base's exact shapes, so `transfusion-k` copies it from the *full* model's weights, and the
thin top is trained from scratch (or drawn Mean Var from the full-width tensors).

Families whose group widths are arguments of their timm builder:

| family | width argument | block groups |
| --- | --- | --- |
| timm ResNets (`resnet18`, `resnet50`, …) | `channels` (planes per stage) | 4 stages |
| CBR (`cbr_tiny`, `cbr_small`, `cbr_large_tall`, `cbr_large_wide`) | `widths` (stem first) | 3 or 4 stages |
| `mobilenetv1_025` | `channels` (output per group) | 5 groups |

Registered names read `{base}_slim{k}_w{percent}`: `resnet50_slim2_w25` is resnet50 with the stem and
layer1-2 as in resnet50 and layer3-4 at 25 % width.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import timm
import torch
from timm.layers import make_divisible
from timm.models import create_model as timm_create_model
from timm.models import generate_default_cfgs, register_model, resolve_pretrained_cfg
from timm.models.resnet import ResNet
from torch import nn

from ..errors import TransfusionError
from .cbr import CBR

__all__ = [
    "SLIM_VARIANTS",
    "SlimError",
    "SlimSpec",
    "init_conflict",
    "slim",
    "slim_spec_of",
    "slim_widths",
    "stock_export",
]

WIDTH_DIVISOR = 8
# data fields of a base's pretrained_cfg that describe its input and head, not its weights
_DATA_FIELDS = (
    "input_size",
    "pool_size",
    "crop_pct",
    "interpolation",
    "mean",
    "std",
    "num_classes",
    "first_conv",
    "classifier",
    "fixed_input_size",
    "crop_mode",
)


class SlimError(TransfusionError, ValueError):
    """A slim hybrid was asked for with an unsupported base, `reuse` or `width`."""


@dataclass(frozen=True)
class SlimSpec:
    """What a slim hybrid is: `base` with its stem and first `reuse` block groups kept, the rest at `width`."""

    base: str
    reuse: int
    width: float

    @property
    def name(self) -> str:
        """The registered name this spec has (or would have): `{base}_slim{reuse}_w{percent}`."""
        return f"{self.base}_slim{self.reuse}_w{round(self.width * 100)}"


@dataclass(frozen=True)
class _Family:
    """How one family exposes its group widths: the builder argument and the widths it holds."""

    width_arg: str
    stock: bool  # stock timm (without this plugin) can build the family from `width_arg`
    group_widths: Callable[[nn.Module], tuple[int, ...]]
    to_arg: Callable[[nn.Module, tuple[int, ...]], tuple[int, ...]]


def _resnet_planes(model: nn.Module) -> tuple[int, ...]:
    stages = [getattr(model, f"layer{i}") for i in range(1, 5)]
    return tuple(stage[-1].conv1.in_channels // type(stage[-1]).expansion for stage in stages)


_RESNET = _Family("channels", True, _resnet_planes, lambda model, widths: widths)
_CBR = _Family(
    "widths",
    False,
    lambda model: tuple(info["num_chs"] for info in model.feature_info[1:]),
    lambda model, widths: (model.feature_info[0]["num_chs"], *widths),
)
_MOBILENET = _Family(
    "channels",
    False,
    lambda model: tuple(stage[-1].conv_pw.out_channels for stage in model.blocks),
    lambda model, widths: widths,
)


def _family(base: str, model: nn.Module) -> _Family:
    if isinstance(model, ResNet):
        return _RESNET
    if isinstance(model, CBR):
        return _CBR
    if base == "mobilenetv1_025":
        return _MOBILENET
    raise SlimError(
        f"slim hybrids of {base!r} are not supported: its group widths are not arguments of its builder. "
        "Supported bases: timm's ResNets (resnet18, resnet34, resnet50, …), cbr_tiny, cbr_small, "
        "cbr_large_tall, cbr_large_wide and mobilenetv1_025"
    )


def _base_layout(base: str) -> tuple[_Family, nn.Module]:
    """The base's family and a weightless (meta-device) instance to read its widths from."""
    if not timm.is_model(base):
        raise SlimError(f"unknown base model {base!r}; see timm.list_models()")
    with torch.device("meta"):
        model = timm_create_model(base)
    return _family(base, model), model


def slim_widths(base: str, *, reuse: int, width: float) -> dict[str, tuple[int, ...]]:
    """The builder argument (`{"channels": (...)}` or `{"widths": (...)}`) that makes `base` slim."""
    family, model = _base_layout(base)
    widths = family.group_widths(model)
    if isinstance(reuse, bool) or not isinstance(reuse, int) or not 0 <= reuse < len(widths):
        raise SlimError(
            f"reuse={reuse!r} is out of range for {base}: it has a stem and {len(widths)} block groups, so "
            f"reuse must be an integer in 0..{len(widths) - 1} (0 = only the stem kept, at least one group slimmed)"
        )
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise SlimError(
            f"width={width!r} is out of range: it is the fraction of each upper group's width kept, "
            "a number in (0, 1] (e.g. 0.25)"
        )
    slimmed = tuple(
        c if i < reuse else int(make_divisible(c * width, WIDTH_DIVISOR)) for i, c in enumerate(widths)
    )
    return {family.width_arg: family.to_arg(model, slimmed)}


def slim(base: str, *, reuse: int, width: float, **kwargs: Any) -> nn.Module:
    """`base` with its stem and first `reuse` block groups unchanged and the groups above at `width` ×.

    A registered combination (see `SLIM_VARIANTS`) is created by its name; any other is `base` created
    with the slim widths as its builder argument (what stock timm rebuilds from its `config.json`). Other
    keywords go to `timm.create_model` (`init=` too, for a registered name). An unregistered one is marked
    slim, so `apply_init(model, ...)` takes its default source from the full base's pretrained weights and
    `transfusion-k` copies the groups up to `reuse` from them.
    """
    spec = SlimSpec(base, reuse, width)
    width_args = slim_widths(base, reuse=reuse, width=width)
    if spec.name in SLIM_VARIANTS and SLIM_VARIANTS[spec.name] == spec:
        return timm.create_model(spec.name, **kwargs)
    if any(key == "init" or key.startswith("init_") for key in kwargs):
        raise SlimError(
            f"{spec.name} is not a registered slim model, so it takes no init= here (models do not depend on "
            "inits): build it with slim(...), then timm_transfusion.apply_init(model, init, source=..., seed=...)"
        )
    model = timm.create_model(base, **width_args, **kwargs)
    model.slim_spec = spec
    return model


def slim_spec_of(model: nn.Module) -> SlimSpec | None:
    """The slim spec of a model built by `slim` or a registered slim name; None for any other model."""
    spec = getattr(model, "slim_spec", None)
    if spec is not None:
        return spec
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    return SLIM_VARIANTS.get(architecture)


def full_source_name(model: nn.Module) -> str | None:
    """The full model whose default pretrained weights initialize a slim `model`; None if not slim."""
    spec = slim_spec_of(model)
    return None if spec is None else spec.base


def init_conflict(model_name: str, init: str) -> str | None:
    """Why `init` cannot initialize the registered slim model `model_name` from its full base, or None.

    Full transfer needs the full widths, and `transfusion-k` above the reused groups would copy tensors of
    another shape; a grid checks this before training instead of failing part-way.
    """
    spec = SLIM_VARIANTS.get(model_name)
    if spec is None:
        return None
    match = re.match(r"^transfusion-(\d+)", init)
    if init == "pretrained" or (match and int(match.group(1)) > spec.reuse):
        return (
            f"{init} copies {spec.base}'s tensors above block group {spec.reuse}, where {model_name} is "
            f"thinner; slim models take random, meanvar and transfusion-0..{spec.reuse}[+meanvar]"
        )
    return None


def stock_export(model: nn.Module) -> dict[str, Any] | None:
    """`save_for_hf` keywords that let stock timm rebuild a slim model without this plugin, or None.

    A slim ResNet is stock timm's ResNet with other `channels`, so its `config.json` can name the base
    architecture and carry the widths in `model_args`; slim CBR and MobileNet models need the plugin.
    """
    spec = slim_spec_of(model)
    if spec is None:
        return None
    family, _ = _base_layout(spec.base)
    if not family.stock:
        return None
    width_args = slim_widths(spec.base, reuse=spec.reuse, width=spec.width)
    model_args = {key: list(value) for key, value in width_args.items()}
    return {"model_config": {"architecture": spec.base}, "model_args": model_args}


def _create_slim(variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered slim variant through its base's own timm entry point, with the variant's cfg."""
    spec = SLIM_VARIANTS[variant]
    cfg = resolve_pretrained_cfg(
        variant, kwargs.pop("pretrained_cfg", None), kwargs.pop("pretrained_cfg_overlay", None)
    ).to_dict()
    entry = timm.models.model_entrypoint(spec.base)
    width_args = slim_widths(spec.base, reuse=spec.reuse, width=spec.width)
    return entry(pretrained=pretrained, pretrained_cfg=cfg, **width_args, **kwargs)


def _cfg(base: str, **kwargs: Any) -> dict[str, Any]:
    """The base's input and head config without its weights (no slim weights are published)."""
    base_cfg = resolve_pretrained_cfg(base).to_dict()
    return {
        **{key: base_cfg[key] for key in _DATA_FIELDS if key in base_cfg},
        "license": "apache-2.0",
        **kwargs,
    }


SLIM_VARIANTS: dict[str, SlimSpec] = {
    spec.name: spec
    for spec in (
        SlimSpec("resnet50", 2, 0.25),
        SlimSpec("resnet50", 2, 0.5),
        SlimSpec("resnet18", 2, 0.5),
        SlimSpec("mobilenetv1_025", 3, 0.5),
        SlimSpec("cbr_large_wide", 1, 0.5),
    )
}

default_cfgs = generate_default_cfgs(
    {f"{name}.untrained": _cfg(spec.base) for name, spec in SLIM_VARIANTS.items()}
)


@register_model
def resnet50_slim2_w25(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 with stem and layer1-2 as resnet50, layer3-4 at 25 % width (the paper's slim hybrid)."""
    return _create_slim("resnet50_slim2_w25", pretrained, **kwargs)


@register_model
def resnet50_slim2_w50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 with stem and layer1-2 as resnet50, layer3-4 at 50 % width."""
    return _create_slim("resnet50_slim2_w50", pretrained, **kwargs)


@register_model
def resnet18_slim2_w50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 with stem and layer1-2 as resnet18, layer3-4 at 50 % width."""
    return _create_slim("resnet18_slim2_w50", pretrained, **kwargs)


@register_model
def mobilenetv1_025_slim3_w50(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNet-V1 ×0.25 with stem and groups 1-3 kept, groups 4-5 at 50 % width (64 and 128 channels)."""
    return _create_slim("mobilenetv1_025_slim3_w50", pretrained, **kwargs)


@register_model
def cbr_large_wide_slim1_w50(pretrained: bool = False, **kwargs: Any) -> CBR:
    """CBR-LargeW with stem and stage 1 kept (64-128), stages 2-3 at 50 % width (128-256)."""
    return _create_slim("cbr_large_wide_slim1_w50", pretrained, **kwargs)
