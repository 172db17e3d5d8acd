"""Activations of any timm model by block group, turned into (datapoints, features) pairs.

Layers are named after the model's ``feature_info`` modules (``blocks.0``, ``layer1``, ``stages.2``, …),
plus ``stem`` (when the first feature is already a block) and ``pre_logits``. Models with
``forward_intermediates`` use it; other layers are captured with forward hooks. Every captured map is
returned as NCHW and, for models with prefix tokens (cls, distillation, registers), hooked token layers
drop them as ``forward_intermediates`` does, so any two layers can be paired. A module that returns a
tensor with its grid size, ``(x, (H, W))`` (the patch embeddings of xcit and naflexvit), gives ``x``.
Models whose ``group_matcher`` has no coarse grouping (rdnet) are grouped by their fine one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..init.groups import coarse_matcher
from .errors import ActivationShapeError, LayerError

STEM, PRE_LOGITS = "stem", "pre_logits"
MODULE_PATH_HINT = "or the path of any module that forward_features runs (see model.named_modules())"


def _patterns(spec) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [spec]
    return [item[0] if isinstance(item, (tuple, list)) else item for item in spec]


def _stem_module(model: nn.Module) -> str | None:
    """The last callable top-level module that the model's ``group_matcher`` puts in the stem, if any.

    Containers (``nn.ModuleList``, ``nn.ModuleDict``, e.g. crossvit's two patch embeddings) are never
    called, so a hook on them would never fire.
    """
    matcher = coarse_matcher(model)
    if not isinstance(matcher, dict):
        return None
    patterns = _patterns(matcher.get("stem"))
    stems = [
        name
        for name, child in model.named_children()
        if any(re.match(p, name) for p in patterns) and not isinstance(child, (nn.ModuleList, nn.ModuleDict))
    ]
    return stems[-1] if stems else None


def default_layers(model: nn.Module) -> list[str]:
    """``stem`` (unless the first feature is the stem), each ``feature_info`` module, ``pre_logits``."""
    features = [info["module"] for info in getattr(model, "feature_info", [])]
    matcher = coarse_matcher(model)
    blocks = _patterns(matcher.get("blocks")) if isinstance(matcher, dict) else []
    first_is_block = bool(features) and any(re.match(p, features[0]) for p in blocks)
    stem = [STEM] if (not features or first_is_block) and _stem_module(model) else []
    layers = stem + features
    return layers + [PRE_LOGITS] if hasattr(model, "forward_head") else layers


def is_channels_last(model: nn.Module, module: nn.Module) -> bool:
    """Whether ``module``'s 4-D output is NHWC: its own ``output_fmt``, else the model's, else NCHW.

    timm marks channels-last models (swin, swinv2, mambaout, sequencer, hieradet, …) with
    ``model.output_fmt = 'NHWC'`` and patch embeddings with their own ``output_fmt`` (a ``Format`` or str).
    """
    layout = getattr(module, "output_fmt", None) or getattr(model, "output_fmt", None)
    return layout == "NHWC"


def output_tensor(output: object) -> torch.Tensor | None:
    """A module's output as one tensor: itself, or ``x`` of an ``(x, size)`` tuple with no other tensor."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        if not any(isinstance(leaf, torch.Tensor) for leaf in _leaves(output[1:])):
            return output[0]
    return None


def _leaves(item: object) -> list[object]:
    return [leaf for part in item for leaf in _leaves(part)] if isinstance(item, (tuple, list)) else [item]


def _token_count(output: object, channels_last: bool) -> int:
    """Patches in a patch embedding's output: (B, N, C), (B, H, W, C), (B, C, H, W) or (x, (H, W))."""
    if isinstance(output, tuple) and len(output) > 1 and _is_grid(output[1]):
        return output[1][0] * output[1][1]
    output = output_tensor(output)
    if output.ndim == 3:
        return output.shape[1]
    return output.shape[1] * output.shape[2] if channels_last else output.shape[2] * output.shape[3]


def _is_grid(size: object) -> bool:
    return isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size)


def _patch_embed(model: nn.Module) -> nn.Module | None:
    """The module that turns images into patch tokens (``patch_embed``; naflexvit's ``embeds``), if called."""
    for name in ("patch_embed", "embeds"):
        module = getattr(model, name, None)
        if isinstance(module, nn.Module) and not isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            return module
    return None


class LayerCapture:
    """Runs ``model`` on a batch and returns {layer name: activation} for the chosen layers.

    Layers in ``feature_info`` come from ``forward_intermediates`` when the model has it; ``stem`` and any
    other module name (``model.get_submodule`` path) are captured with forward hooks. 4-D activations are
    NCHW whatever the model's layout; hooked (B, N, C) token activations lose the model's
    ``num_prefix_tokens`` leading tokens when N is the patch count plus those tokens.
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
        self.channels_last = {
            name for name, module in self.modules.items() if is_channels_last(model, module)
        }
        self.prefix_tokens = self._prefix_tokens() if self.modules else 0
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
        raise LayerError(
            f"{type(self.model).__name__} has no layer {name!r}; valid names include "
            f"{default_layers(self.model)} {MODULE_PATH_HINT}"
        )

    def _prefix_tokens(self) -> int:
        """The model's leading cls/dist/register tokens, when its patch embedding tells the patch count."""
        if _patch_embed(self.model) is None:
            return 0
        return int(getattr(self.model, "num_prefix_tokens", 0) or 0)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        captured: dict[str, object] = {}
        patches: list[int] = []
        handles = [
            module.register_forward_hook(_store(captured, name)) for name, module in self.modules.items()
        ]
        if self.prefix_tokens:
            patch_embed = _patch_embed(self.model)
            channels_last = is_channels_last(self.model, patch_embed)
            handles.append(
                patch_embed.register_forward_hook(
                    lambda _m, _i, output: patches.append(_token_count(output, channels_last))
                )
            )
        try:
            captured.update(self._forward(images))
        finally:
            for handle in handles:
                handle.remove()
        return {name: self._activation(name, captured, patches) for name in self.layers}

    def _forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ``forward_intermediates`` layers and ``pre_logits``; hooks fill in the rest meanwhile."""
        outputs = {}
        if self.indices:
            order = sorted(self.indices, key=self.indices.get)
            final, intermediates = self.model.forward_intermediates(
                images, indices=[self.indices[name] for name in order]
            )
            outputs.update(zip(order, intermediates, strict=True))
        elif hasattr(self.model, "forward_features"):
            final = self.model.forward_features(images)
        else:
            final = self.model(images)
        if PRE_LOGITS in self.layers:
            outputs[PRE_LOGITS] = self.model.forward_head(final, pre_logits=True)
        return outputs

    def _activation(self, name: str, captured: dict[str, object], patches: list[int]) -> torch.Tensor:
        """The captured output of ``name``, checked and brought to NCHW / patch tokens only."""
        if name not in captured:
            raise LayerError(self._not_run_message(name))
        activation = output_tensor(captured[name])
        if activation is None:
            raise LayerError(
                f"module {name!r} of {type(self.model).__name__} returned a {type(captured[name]).__name__}, "
                "not a tensor; capture a module that returns one tensor (or a tensor and its grid size)"
            )
        if activation.ndim == 4 and name in self.channels_last:
            return activation.permute(0, 3, 1, 2)
        if activation.ndim == 3 and patches and activation.shape[1] == patches[-1] + self.prefix_tokens:
            return activation[:, self.prefix_tokens :]
        return activation

    def _not_run_message(self, name: str) -> str:
        forward = "forward_intermediates" if self.indices else "forward_features"
        forward = forward if hasattr(self.model, "forward_features") else "forward"
        return (
            f"module {name!r} of {type(self.model).__name__} did not run in {forward} (the classifier head "
            f"never runs: use 'pre_logits' for the pooled features); layers that can be captured: "
            f"{default_layers(self.model)} {MODULE_PATH_HINT}"
        )


def _store(captured: dict[str, object], name: str) -> Callable:
    """A forward hook that keeps the module's output under ``name``."""
    return lambda _module, _inputs, output: captured.__setitem__(name, output)


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
