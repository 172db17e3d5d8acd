"""MobileNet-V1 at width 0.25 with plain ReLU, built by timm's own MobileNet-V1 generator.

timm registers MobileNet-V1 only at widths ≥ 1.0 with ReLU6; the real ImageNet weights shipped for
this project (`mobilenetv1_025_imagenet.safetensors`) need width 0.25 and ReLU. No public download
location is known, so the `in1k` config carries no URL: load them with
`pretrained_cfg_overlay=dict(file=PATH)` or as an init source.
"""

from __future__ import annotations

from timm.models import generate_default_cfgs, register_model
from timm.models.efficientnet import EfficientNet

from .._timm import _gen_mobilenet_v1

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


@register_model
def mobilenetv1_025(pretrained: bool = False, **kwargs) -> EfficientNet:
    """MobileNet-V1 ×0.25 with ReLU (13 depthwise-separable blocks, 470k parameters)."""
    kwargs.setdefault("act_layer", "relu")
    return _gen_mobilenet_v1("mobilenetv1_025", 0.25, pretrained=pretrained, **kwargs)
