"""Resolve an init source to a state dict, through timm's own loading machinery.

A source is a timm model name (with or without tag), `hf-hub:org/repo`, `local-dir:PATH`, a weights
file (.safetensors / .pth / .pth.tar / .bin; `state_dict` / `model` wrappers and `module.` prefixes
are handled by timm's `load_state_dict`), a state dict, or an `nn.Module`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import load_state_dict
from timm.models._builder import resolve_pretrained_cfg
from timm.models._factory import parse_model_name
from timm.models._helpers import clean_state_dict
from torch import nn

from .errors import SourceError, SourceUnavailableError

Source = str | Path | Mapping[str, torch.Tensor] | nn.Module

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".tar")
_HOW_TO_PASS_LOCAL = (
    "pass local weights instead, e.g. init_source='path/to/weights.safetensors' (or .pth/.bin), "
    "init_source='local-dir:PATH' (a folder written by timm's save_for_hf), or a state dict / nn.Module"
)


def resolve_source(
    source: Source | None,
    *,
    model_name: str | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Return the source weights as a CPU state dict.

    With `source=None` the weights are the default pretrained weights of `model_name` (optionally
    redirected by `pretrained_cfg_overlay`, e.g. `dict(file=...)`), downloaded by timm when online.
    """
    if source is None:
        if model_name is None:
            raise SourceError("no init source given and the model's name is unknown; " + _HOW_TO_PASS_LOCAL)
        return _pretrained_state(model_name, pretrained_cfg_overlay)
    if isinstance(source, nn.Module):
        return {k: v.detach().cpu() for k, v in source.state_dict().items()}
    if isinstance(source, Mapping):
        return clean_state_dict(dict(source))
    if not isinstance(source, (str, Path)):
        raise SourceError(f"unsupported init source of type {type(source).__name__}; " + _HOW_TO_PASS_LOCAL)
    text = str(source)
    if text.startswith(("hf-hub:", "local-dir:")):
        return _pretrained_state(text, None)
    path = Path(text).expanduser()
    if path.is_dir():
        return _pretrained_state(f"local-dir:{path}", None)
    if path.is_file():
        return _read_weights_file(path)
    if path.suffix in WEIGHT_SUFFIXES or "/" in text or "\\" in text:
        raise SourceError(f"init source file {text!r} does not exist")
    if not timm.is_model(text.split(".")[0]) and not timm.is_model(text):
        raise SourceError(
            f"init source {text!r} is neither an existing file or folder, 'hf-hub:…', 'local-dir:…', "
            "nor a timm model name (see timm.list_models())"
        )
    return _pretrained_state(text, None)


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = load_state_dict(str(path))
    except Exception as error:  # safetensors, pickle and zip errors have no common base class
        raise SourceError(
            f"could not read weights file {str(path)!r} ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SourceError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    return dict(state)


def _has_weights_location(model_name: str, overlay: dict[str, Any] | None) -> bool:
    """Whether timm knows where to get `model_name`'s weights (timm only warns and stays random otherwise)."""
    architecture, tag = parse_model_name(model_name)[1].partition(".")[::2]
    cfg = resolve_pretrained_cfg(architecture, pretrained_cfg=tag or None, pretrained_cfg_overlay=overlay)
    return any(getattr(cfg, field, None) for field in ("url", "hf_hub_id", "file", "state_dict"))


def _pretrained_state(model_name: str, overlay: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    """Build `model_name` with pretrained=True through timm (hub, url, file, local-dir) and take its state."""
    from .factory import timm_create_model

    if not model_name.startswith(("hf-hub:", "local-dir:")) and not _has_weights_location(
        model_name, overlay
    ):
        raise SourceUnavailableError(
            f"{model_name!r} has no default pretrained weights to download; " + _HOW_TO_PASS_LOCAL
        )
    try:
        model = timm_create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay)
    except Exception as error:  # hub, url and file loaders raise unrelated exception types
        raise SourceUnavailableError(
            f"could not load pretrained weights for {model_name!r} ({type(error).__name__}: {error}); "
            "if you are offline and they are not cached, " + _HOW_TO_PASS_LOCAL
        ) from error
    return {k: v.detach() for k, v in model.state_dict().items()}
