"""The arguments timm would re-create a model with, minus the `init=` keywords the extension was given.

`timm.create_model(name, init=...)` records every keyword on the model (timm's `get_model_args`), `init` ones
included; rebuilding the random reference or the pretrained source from them must not initialize again.
"""

from __future__ import annotations

from typing import Any

from timm.models import get_model_args
from torch import nn

from .._timm import drop_model_args
from .registry import resolve_init

INIT_KEYWORDS = ("init", "init_source", "init_seed", "init_options")


def init_keywords(model_args: dict[str, Any]) -> set[str]:
    """The keywords of `model_args` that belong to `init=` (its options' `init_<option>` names too)."""
    keys = {key for key in INIT_KEYWORDS if key in model_args}
    if isinstance(model_args.get("init"), str):
        entry, _ = resolve_init(model_args["init"])
        keys |= {f"init_{name}" for name in entry.options if f"init_{name}" in model_args}
    return keys


def model_args(model: nn.Module) -> dict[str, Any]:
    """timm's `get_model_args(model)` without the `init=` keywords."""
    args = get_model_args(model)
    return {key: value for key, value in args.items() if key not in init_keywords(args)}


def forget_init_keywords(model: nn.Module) -> nn.Module:
    """Drop the `init=` keywords from what timm recorded on `model`, so `save_for_hf` never exports them."""
    drop_model_args(model, init_keywords(dict(getattr(model, "_model_args", None) or {})))
    return model


def _forget_before_state_dict(model: nn.Module, prefix: str, keep_vars: bool) -> None:
    forget_init_keywords(model)


def forget_init_keywords_on_save(model: nn.Module) -> nn.Module:
    """Forget the `init=` keywords whenever `model.state_dict()` is taken, i.e. before timm exports it.

    timm records the factory's keywords only after the entrypoint returned, and `save_for_hf` /
    `push_to_hf_hub` read the weights before the arguments, so a config.json written by stock timm never
    names `init` (stock timm could not load it).
    """
    model.register_state_dict_pre_hook(_forget_before_state_dict)
    return model
