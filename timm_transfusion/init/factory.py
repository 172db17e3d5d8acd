"""`create_model`: timm's factory plus `init=`, and the patch that makes `timm.create_model` accept it."""

from __future__ import annotations

import functools
from typing import Any

import timm
import timm.models
import torch
from timm.models._builder import pretrained_cfg_for_features
from timm.models._factory import create_model as timm_create_model
from torch import nn

from .apply import run_init
from .context import InitContext
from .errors import InitError, InitOptionError
from .groups import classifier_keys
from .registry import check_options, resolve_init
from .seeding import seeded
from .source import Source

_FEATURE_KWARGS = ("out_indices", "feature_cls")


@functools.wraps(timm_create_model, assigned=("__module__", "__name__", "__qualname__"))
def create_model(
    model_name: str,
    pretrained: bool = False,
    *args: Any,
    init: str | None = None,
    init_source: Source | None = None,
    init_seed: int | None = None,
    init_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """`timm.create_model` with a Transfusion initializer.

    Without `init` this is exactly timm's factory. With it, the model is built by timm (seeded by
    `init_seed`), then initialized by the registered initializer `init` from `init_source` (default:
    what `pretrained=True` would load for this model, `pretrained_cfg_overlay` included). Options of the
    initializer go in `init_options` or as `init_<option>=` keywords (e.g. `init_bn="transfer"`); any
    other keyword, `init_values` included, goes to timm.
    """
    if init is None:
        if init_source is not None or init_seed is not None or init_options:
            raise InitError(
                "init_source, init_seed and init_options need init=...; see timm_transfusion.list_inits()"
            )
        return timm_create_model(model_name, pretrained, *args, **kwargs)
    if pretrained or args or kwargs.get("checkpoint_path"):
        raise InitError(
            f"init={init!r} sets the weights: pass timm's other arguments by keyword, and use "
            "init='pretrained' (with init_source=...) instead of pretrained=True / checkpoint_path"
        )
    entry, _ = resolve_init(init)
    options = dict(init_options or {})
    options.update({name: kwargs.pop(f"init_{name}") for name in entry.options if f"init_{name}" in kwargs})
    check_options(entry, options, source=init_source)

    features_only = kwargs.pop("features_only", False)
    feature_kwargs = {key: kwargs.pop(key) for key in _FEATURE_KWARGS if key in kwargs}
    with seeded(init_seed):
        model = _build(model_name, entry.pattern, entry.options, kwargs)
    context = InitContext(model=model, seed=init_seed, source=init_source, reference_state=model.state_dict())
    run_init(context, init, options)
    return _as_features(model, model_name, kwargs, feature_kwargs) if features_only else model


def _build(model_name: str, init: str, init_options: dict[str, Any], kwargs: dict[str, Any]) -> nn.Module:
    """Build the model with timm; an `init_*` keyword that neither side knows is reported as such."""
    try:
        return timm_create_model(model_name, **kwargs)
    except TypeError as error:
        stray = [key for key in kwargs if key.startswith("init_") and key in str(error)]
        if not stray:
            raise
        raise InitOptionError(
            f"{stray[0]!r} is neither an option of init {init!r} (valid: {', '.join(init_options) or 'none'}) "
            f"nor an argument of {model_name}"
        ) from error


def _as_features(
    model: nn.Module, model_name: str, kwargs: dict[str, Any], feature_kwargs: dict[str, Any]
) -> nn.Module:
    """The features_only wrapper of an initialized model, built by timm around the model's state.

    timm wraps a model right after loading its pretrained weights, so the initialized state goes in as the
    pretrained state dict; the wrapper's keys differ from the model's, which is why it is not wrapped here.
    """
    state = model.state_dict()
    head = classifier_keys(model, state)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {}, source="")
    overlay["state_dict"] = {key: value for key, value in state.items() if key not in head}
    with torch.random.fork_rng():  # the wrapper's own random init is overwritten; keep the caller's RNG
        features = timm_create_model(
            model_name, True, pretrained_cfg_overlay=overlay, features_only=True, **feature_kwargs, **kwargs
        )
    features.pretrained_cfg = features.default_cfg = pretrained_cfg_for_features(model.pretrained_cfg)
    return features


def patch_timm() -> None:
    """Make `timm.create_model` and `timm.models.create_model` accept `init=` (idempotent)."""
    timm.create_model = create_model
    timm.models.create_model = create_model
