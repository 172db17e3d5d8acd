"""Resolve an init source to a state dict, through timm's own loading machinery.

A source is a timm model name (with or without tag), `hf-hub:org/repo`, `local-dir:PATH`, a weights
file (.safetensors / .pth / .pth.tar / .bin; `state_dict` / `model` wrappers and `module.` prefixes
are handled by timm's `load_state_dict`), a state dict, or an `nn.Module`. With no source, the
weights are what `timm.create_model(..., pretrained=True)` gives the model itself: its
`pretrained_cfg` (hub id, url, file or local dir) and its arguments, so timm adapts `in_chans`,
`img_size` and the classifier exactly as it would for stock pretrained loading.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import constants
from safetensors import SafetensorError
from timm.models import clean_state_dict, create_model, load_state_dict, resolve_pretrained_cfg
from torch import nn

from ..models.slim import full_source_name
from ..source_kind import local_path, source_kind
from .errors import SourceError, SourceUnavailableError
from .model_args import model_args as recreation_args

Source = str | Path | Mapping[str, torch.Tensor] | nn.Module

# What reading a corrupt or foreign weights file raises: safetensors, pickle and torch's zip reader have no
# common base class. Anything else (a bug, memory) propagates as itself.
_UNREADABLE = (SafetensorError, pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError)
# What fetching pretrained weights raises: network and cache errors (OSError), timm's "no such tag/weights"
# (RuntimeError), a state dict that does not fit (RuntimeError), a malformed name (ValueError).
_UNLOADABLE = (OSError, RuntimeError, ValueError)
_CHECKPOINT_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
_INPUT_ARGS = ("in_chans", "img_size")
_HOW_TO_PASS_LOCAL = (
    "pass local weights instead, e.g. init_source='path/to/weights.safetensors' (or .pth/.bin), "
    "init_source='local-dir:PATH' (a folder written by timm's save_for_hf), or a state dict / nn.Module"
)


def resolve_source(source: Source | None, *, model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the weights of `source` for initializing `model`, as a state dict."""
    if source is None:
        return _default_weights(model)
    if isinstance(source, nn.Module):
        return clean_state_dict(
            {k: v.detach() for k, v in getattr(source, "module", source).state_dict().items()}
        )
    if isinstance(source, Mapping):
        return _unwrap_checkpoint(source)
    if not isinstance(source, (str, Path)):
        raise SourceError(f"unsupported init source of type {type(source).__name__}; " + _HOW_TO_PASS_LOCAL)
    text = str(source)
    input_args = {k: v for k, v in recreation_args(model).items() if k in _INPUT_ARGS}
    kind = source_kind(text)
    if kind == "local-dir" and not local_path(text).is_dir():
        raise SourceError(f"init source {text!r}: the folder {str(local_path(text))!r} does not exist")
    if kind in ("hf-hub", "local-dir"):
        return _pretrained_state(text, input_args)
    if kind == "folder":
        return _pretrained_state(f"local-dir:{local_path(text)}", input_args)
    if kind == "file":
        if not local_path(text).is_file():
            raise SourceError(f"init source file {text!r} does not exist")
        return _read_weights_file(local_path(text))
    architecture, _, tag = text.partition(".")
    if not timm.is_model(architecture):
        raise SourceError(
            f"init source {text!r} is neither an existing file or folder, 'hf-hub:…', 'local-dir:…', "
            "nor a timm model name (see timm.list_models())"
        )
    try:
        cfg = resolve_pretrained_cfg(architecture, pretrained_cfg=tag or None).to_dict()
    except RuntimeError as error:
        raise SourceError(
            f"init source {text!r}: {error} (see timm.list_pretrained('{architecture}*'))"
        ) from error
    _check_weights_location(text, cfg)
    return _pretrained_state(text, input_args)


def _default_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """What stock timm loads for `model` with pretrained=True: same cfg, same arguments.

    A slim hybrid has no weights of its own: its default is what its full base loads (same input args).
    """
    full = full_source_name(model)
    if full is not None:
        cfg = resolve_pretrained_cfg(full).to_dict()
        _check_weights_location(full, cfg)
        input_args = {k: v for k, v in recreation_args(model).items() if k in _INPUT_ARGS}
        return _pretrained_state(full, input_args)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    architecture = cfg.get("architecture")
    if not architecture:
        raise SourceError(
            f"no init source given and {type(model).__name__} has no pretrained_cfg; " + _HOW_TO_PASS_LOCAL
        )
    _check_weights_location(architecture, cfg)
    return _pretrained_state(architecture, recreation_args(model), pretrained_cfg=cfg)


def _check_weights_location(name: str, cfg: dict[str, Any]) -> None:
    """Raise where timm would only warn and stay random: a pretrained_cfg that names no weights."""
    if cfg.get("source") in ("hf-hub", "local-dir"):
        return
    if not any(cfg.get(field) for field in ("url", "hf_hub_id", "file", "state_dict")):
        raise SourceUnavailableError(
            f"{name!r} has no default pretrained weights to download; " + _HOW_TO_PASS_LOCAL
        )


def _unwrap_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint dict (`state_dict` / `model` / EMA wrappers, `module.` prefixes)."""
    for key in _CHECKPOINT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return _unwrap_checkpoint(checkpoint[key])
    state = clean_state_dict(dict(checkpoint))
    odd = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if odd:
        raise SourceError(
            f"the init source is not a state dict of tensors: {odd[0]!r} is a {type(state[odd[0]]).__name__}"
        )
    return state


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        checkpoint = load_state_dict(str(path))
    except torch.OutOfMemoryError:
        raise
    except _UNREADABLE as error:
        raise SourceError(
            f"could not read weights file {str(path)!r} ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(checkpoint, Mapping):
        raise SourceError(f"weights file {str(path)!r} holds a {type(checkpoint).__name__}, not a state dict")
    try:
        return _unwrap_checkpoint(checkpoint)
    except SourceError as error:
        raise SourceError(f"weights file {str(path)!r}: {error}") from error


def hub_reachable() -> bool:
    """Whether the Hub endpoint (``HF_ENDPOINT``) accepts a TCP connection, asked once per endpoint and process.

    Unreachable, huggingface_hub retries every request with back-off (about 50 s) before it falls back to the
    cache or fails; knowing up front lets a load go straight to the cache.
    """
    return _accepts_connections(constants.ENDPOINT)


@cache
def _accepts_connections(url: str, timeout: float = 3.0) -> bool:
    endpoint = urlparse(url)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextmanager
def _offline_when_unreachable() -> Iterator[bool]:
    """huggingface_hub's offline mode for one load when the Hub cannot be reached; restored afterwards."""
    switch = not constants.HF_HUB_OFFLINE and not hub_reachable()
    if switch:
        constants.HF_HUB_OFFLINE = True
    try:
        yield switch
    finally:
        if switch:
            constants.HF_HUB_OFFLINE = False


def _needs_hub(model_name: str, kwargs: dict[str, Any]) -> bool:
    """Whether timm would download ``model_name``'s weights from the Hub (not a file, folder or URL)."""
    if model_name.startswith("hf-hub:"):
        return True
    cfg = kwargs.get("pretrained_cfg")
    if cfg is None and not model_name.startswith("local-dir:"):
        architecture, _, tag = model_name.partition(".")
        try:
            cfg = resolve_pretrained_cfg(architecture, pretrained_cfg=tag or None).to_dict()
        except RuntimeError:
            return False
    return (
        bool(cfg) and bool(cfg.get("hf_hub_id")) and not cfg.get("file") and cfg.get("source") != "local-dir"
    )


def _pretrained_state(model_name: str, model_args: dict[str, Any], **kwargs: Any) -> dict[str, torch.Tensor]:
    """Build `model_name` with pretrained=True through timm (hub, url, file, local-dir) and take its state.

    When the Hub is needed but unreachable, the load runs offline: cached weights load at once, and missing ones
    fail at once instead of after a minute of retries.
    """
    offline = False
    try:
        if _needs_hub(model_name, kwargs):
            with _offline_when_unreachable() as offline:
                model = create_model(model_name, pretrained=True, **model_args, **kwargs)
        else:
            model = create_model(model_name, pretrained=True, **model_args, **kwargs)
    except torch.OutOfMemoryError:
        raise
    except _UNLOADABLE as error:
        if offline:
            raise SourceUnavailableError(
                f"could not load pretrained weights for {model_name!r}: the Hub ({constants.ENDPOINT}) cannot be "
                "reached and they are not in the local cache; " + _HOW_TO_PASS_LOCAL
            ) from error
        raise SourceUnavailableError(
            f"could not load pretrained weights for {model_name!r} ({type(error).__name__}: {error}); "
            "if you are offline and they are not cached, " + _HOW_TO_PASS_LOCAL
        ) from error
    return {k: v.detach() for k, v in model.state_dict().items()}
