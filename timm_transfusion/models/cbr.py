"""CBR networks from Raghu et al. 2019 (Transfusion), the paper's small baselines.

Each stage is conv(k×k, stride 1, 'same' padding, no bias) → BatchNorm → ReLU → max-pool 3×3 stride 2
(padding 1), followed by global average pooling and a linear head. The first stage is the stem
(the paper's "conv1"), so `transfusion-0` reuses exactly that layer.

| model | kernel | widths |
| --- | --- | --- |
| cbr_large_tall | 7×7 | 32-64-128-256-512 |
| cbr_large_wide | 7×7 | 64-128-256-512 |
| cbr_small | 7×7 | 32-64-128-256 |
| cbr_tiny | 5×5 | 64-128-256-512 |

Published reimplementations differ in padding and in CBR-Tiny; this one follows the paper's text as
tabled above (parameter counts in the README, checked by tests/test_models.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn as nn
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model

from .._timm import feature_take_indices
from ..errors import TransfusionError

__all__ = ["CBR"]


class OutputFormatError(TransfusionError, ValueError):
    """`forward_intermediates` was asked for a layout other than NCHW."""


class ConvBnReLUPool(nn.Module):
    """One CBR stage: conv → batchnorm → ReLU → max-pool 3×3 stride 2."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


class CBR(nn.Module):
    """A stack of CBR stages with a global-pool linear classifier."""

    def __init__(
        self,
        widths: Sequence[int],
        kernel_size: int = 7,
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.stem = ConvBnReLUPool(in_chans, widths[0], kernel_size)
        self.stages = nn.Sequential(
            *[ConvBnReLUPool(c_in, c_out, kernel_size) for c_in, c_out in itertools.pairwise(widths)]
        )
        self.feature_info = [dict(num_chs=widths[0], reduction=2, module="stem")]
        self.feature_info += [
            dict(num_chs=c, reduction=2 ** (i + 2), module=f"stages.{i}") for i, c in enumerate(widths[1:])
        ]
        self.num_features = self.head_hidden_size = widths[-1]
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward that also returns the output of the stem and of each stage (indices as in timm)."""
        if output_fmt != "NCHW":
            raise OutputFormatError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        blocks = [self.stem, *self.stages]
        if stop_early:
            blocks = blocks[: max_index + 1]
        intermediates = []
        for idx, block in enumerate(blocks):
            x = block(x)
            if idx in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages (and optionally the head) that the requested intermediates do not need."""
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        self.stages = self.stages[:max_index]
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_cbr(variant: str, pretrained: bool = False, **kwargs) -> CBR:
    out_indices = tuple(range(len(kwargs["widths"])))
    return build_model_with_cfg(
        CBR, variant, pretrained, feature_cfg=dict(flatten_sequential=True, out_indices=out_indices), **kwargs
    )


def _cfg(**kwargs) -> dict:
    return {
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (14, 14),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.conv",
        "classifier": "fc",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "cbr_tiny.untrained": _cfg(),
        "cbr_small.untrained": _cfg(),
        "cbr_large_tall.untrained": _cfg(pool_size=(7, 7)),
        "cbr_large_wide.untrained": _cfg(),
    }
)


@register_model
def cbr_tiny(pretrained: bool = False, **kwargs) -> CBR:
    """CBR-Tiny: 5×5 convs, 64-128-256-512."""
    model_args = dict(widths=(64, 128, 256, 512), kernel_size=5)
    return _create_cbr("cbr_tiny", pretrained, **dict(model_args, **kwargs))


@register_model
def cbr_small(pretrained: bool = False, **kwargs) -> CBR:
    """CBR-Small: 7×7 convs, 32-64-128-256."""
    model_args = dict(widths=(32, 64, 128, 256), kernel_size=7)
    return _create_cbr("cbr_small", pretrained, **dict(model_args, **kwargs))


@register_model
def cbr_large_tall(pretrained: bool = False, **kwargs) -> CBR:
    """CBR-LargeT: 7×7 convs, 32-64-128-256-512."""
    model_args = dict(widths=(32, 64, 128, 256, 512), kernel_size=7)
    return _create_cbr("cbr_large_tall", pretrained, **dict(model_args, **kwargs))


@register_model
def cbr_large_wide(pretrained: bool = False, **kwargs) -> CBR:
    """CBR-LargeW: 7×7 convs, 64-128-256-512."""
    model_args = dict(widths=(64, 128, 256, 512), kernel_size=7)
    return _create_cbr("cbr_large_wide", pretrained, **dict(model_args, **kwargs))
