"""MobileNet-V1 at width 0.25 with plain ReLU, built by timm's own MobileNet-V1 generator.

timm registers MobileNet-V1 only at widths ≥ 1.0 with ReLU6; the real ImageNet weights shipped for
this project (`mobilenetv1_025_imagenet.safetensors`) need width 0.25 and ReLU. No public download
location is known, so the `in1k` config carries no URL: load them with
`pretrained_cfg_overlay=dict(file=PATH)` or as an init source.

`channels=` sets the output width of each of the five block groups (default 16-32-64-128-256), which
is how the slim hybrids in `slim.py` thin the upper groups; the stages are timm's `dsa` blocks decoded by
its `decode_arch_def`, exactly as `_gen_mobilenet_v1` builds them.
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.models import generate_default_cfgs, register_model
from timm.models.efficientnet import EfficientNet

from .._timm import _create_effnet, _gen_mobilenet_v1, decode_arch_def
from ..errors import TransfusionError


class ChannelsError(TransfusionError, ValueError):
    """A MobileNet-V1 variant was given a width list of the wrong length."""


STEM_WIDTH = 8
DEFAULT_CHANNELS = (16, 32, 64, 128, 256)
# (blocks, stride) of the five depthwise-separable groups of MobileNet-V1
_STAGES = ((1, 1), (2, 2), (2, 2), (6, 2), (2, 2))

default_cfgs = generate_default_cfgs(
    {
        "mobilenetv1_025.in1k": {
            "num_classes": 1000,
            "input_size": (3, 224, 224),
            "pool_size": (7, 7),
            "crop_pct": 0.875,
            "interpolation": "bilinear",
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "first_conv": "conv_stem",
            "classifier": "classifier",
            "license": "mit",
        },
    }
)


def _create_with_channels(variant: str, channels: Sequence[int], pretrained: bool, **kwargs) -> EfficientNet:
    """MobileNet-V1 ×0.25 (8-channel stem, ReLU) with the given output width for each block group."""
    if len(channels) != len(_STAGES):
        raise ChannelsError(
            f"channels={tuple(channels)} must give {len(_STAGES)} widths, one per block group of MobileNet-V1"
        )
    arch_def = [[f"dsa_r{n}_k3_s{s}_c{c}"] for (n, s), c in zip(_STAGES, channels, strict=False)]
    return _create_effnet(
        variant,
        pretrained,
        block_args=decode_arch_def(arch_def),
        num_features=0,
        stem_size=STEM_WIDTH,
        fix_stem=True,
        **kwargs,
    )


@register_model
def mobilenetv1_025(
    pretrained: bool = False, channels: Sequence[int] | None = None, **kwargs
) -> EfficientNet:
    """MobileNet-V1 ×0.25 with ReLU (13 depthwise-separable blocks, 470k parameters)."""
    kwargs.setdefault("act_layer", "relu")
    if channels is not None:
        return _create_with_channels("mobilenetv1_025", channels, pretrained, **kwargs)
    return _gen_mobilenet_v1("mobilenetv1_025", 0.25, pretrained=pretrained, **kwargs)
