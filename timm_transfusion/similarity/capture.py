"""Activations of any timm model by block group, turned into (datapoints, features) pairs.

Layers are named after the model's ``feature_info`` modules (``blocks.0``, ``layer1``, ``stages.2``, …),
plus ``stem`` (when the first feature is already a block) and ``pre_logits``. Models with
``forward_intermediates`` use it; other layers are captured with forward hooks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ActivationShapeError, LayerError

STEM, PRE_LOGITS = "stem", "pre_logits"


def _patterns(spec) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [spec]
    return [item[0] if isinstance(item, (tuple, list)) else item for item in spec]


def _stem_module(model: nn.Module) -> str | None:
    """The last top-level module that the model's ``group_matcher`` puts in the stem, if any."""
    if not hasattr(model, "group_matcher"):
        return None
    matcher = model.group_matcher(coarse=True)
    if not isinstance(matcher, dict):
        return None
    patterns = _patterns(matcher.get("stem"))
    stems = [name for name, _ in model.named_children() if any(re.match(p, name) for p in patterns)]
    return stems[-1] if stems else None


def default_layers(model: nn.Module) -> list[str]:
    """``stem`` (unless the first feature is the stem), each ``feature_info`` module, ``pre_logits``."""
    features = [info["module"] for info in getattr(model, "feature_info", [])]
    matcher = model.group_matcher(coarse=True) if hasattr(model, "group_matcher") else {}
    blocks = _patterns(matcher.get("blocks")) if isinstance(matcher, dict) else []
    first_is_block = bool(features) and any(re.match(p, features[0]) for p in blocks)
    stem = [STEM] if (not features or first_is_block) and _stem_module(model) else []
    layers = stem + features
    return layers + [PRE_LOGITS] if hasattr(model, "forward_head") else layers


class LayerCapture:
    """Runs ``model`` on a batch and returns {layer name: activation} for the chosen layers.

    Layers in ``feature_info`` come from ``forward_intermediates`` when the model has it; ``stem`` and any
    other module name (``model.get_submodule`` path) are captured with forward hooks.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None) -> None:
        self.model = model
        self.layers = list(layers) if layers is not None else default_layers(model)
        if not self.layers:
            raise LayerError(f"no layers to capture in {type(model).__name__}; pass module names as layers=")
        features = [info["module"] for info in getattr(model, "feature_info", [])]
        self.indices = {}
        if hasattr(model, "forward_intermediates"):
            self.indices = {name: features.index(name) for name in self.layers if name in features}
        hooked = [name for name in self.layers if name not in self.indices and name != PRE_LOGITS]
        self.modules = {name: self._resolve(name) for name in hooked}
        if PRE_LOGITS in self.layers and not hasattr(model, "forward_head"):
            raise LayerError(
                f"{type(model).__name__} has no forward_head, so 'pre_logits' cannot be captured"
            )

    def _resolve(self, name: str) -> nn.Module:
        target = _stem_module(self.model) if name == STEM else name
        if target:
            try:
                return self.model.get_submodule(target)
            except AttributeError:
                pass
        valid = default_layers(self.model) + [n for n, _ in self.model.named_children()]
        raise LayerError(f"{type(self.model).__name__} has no layer {name!r}; valid names include {valid}")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}
        handles = [
            module.register_forward_hook(lambda _m, _i, output, name=name: captured.__setitem__(name, output))
            for name, module in self.modules.items()
        ]
        try:
            if self.indices:
                order = sorted(self.indices, key=self.indices.get)
                final, intermediates = self.model.forward_intermediates(
                    images, indices=[self.indices[name] for name in order]
                )
                captured.update(zip(order, intermediates, strict=True))
            elif hasattr(self.model, "forward_features"):
                final = self.model.forward_features(images)
            else:
                final = self.model(images)
            if PRE_LOGITS in self.layers:
                captured[PRE_LOGITS] = self.model.forward_head(final, pre_logits=True)
        finally:
            for handle in handles:
                handle.remove()
        return {name: captured[name] for name in self.layers}


def as_positions(activation: torch.Tensor) -> torch.Tensor:
    """(B, C), (B, C, H, W) or (B, N, C) tokens -> (B, positions, C)."""
    if activation.ndim == 2:
        return activation.unsqueeze(1)
    if activation.ndim == 3:
        return activation
    if activation.ndim == 4:
        return activation.flatten(2).transpose(1, 2)
    raise LayerError(
        f"cannot treat an activation of shape {tuple(activation.shape)} as (batch, ..., features)"
    )


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool two NCHW maps to their common (smallest) height and width; others pass through."""
    if a.ndim != 4 or b.ndim != 4 or a.shape[2:] == b.shape[2:]:
        return a, b
    size = (min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3]))
    return F.adaptive_avg_pool2d(a, size), F.adaptive_avg_pool2d(b, size)


def subsample_positions(
    a: torch.Tensor, b: torch.Tensor, first_image: int, max_positions: int | None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P, Ca), (B, P, Cb) -> (B·k, Ca), (B·k, Cb) with the same k ≤ max_positions positions for both.

    Positions come from one fixed random permutation (``seed``), read from an offset that advances with the
    image's index in the data, so the choice does not depend on the batch size and covers every position.
    """
    if a.shape[:2] != b.shape[:2]:
        raise ActivationShapeError(
            f"paired activations need the same images and positions; got {a.shape} and {b.shape}"
        )
    batch, positions = a.shape[:2]
    if max_positions is not None and max_positions < positions:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(positions, generator=generator).to(a.device)
        images = torch.arange(first_image, first_image + batch, device=a.device)
        steps = (
            images.unsqueeze(1) * max_positions + torch.arange(max_positions, device=a.device)
        ) % positions
        index = order[steps]
        a = a.gather(1, index.unsqueeze(2).expand(-1, -1, a.shape[2]))
        b = b.gather(1, index.unsqueeze(2).expand(-1, -1, b.shape[2]))
    return a.reshape(-1, a.shape[2]), b.reshape(-1, b.shape[2])
