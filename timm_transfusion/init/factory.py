"""`create_model`: timm's factory plus `init=`; `build_initialized` is the one recipe both entry points use.

`timm_transfusion.create_model` is the explicit API and works whether or not the `timm.create_model(init=...)`
extension (:mod:`timm_transfusion.init.extension`) is switched on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import timm.models
import torch
from torch import nn

from .._timm import pretrained_cfg_for_features
from .apply import run_init
from .context import InitContext
from .errors import InitError, InitOptionError
from .groups import classifier_keys
from .registry import check_options, resolve_init
from .seeding import seeded
from .source import Source

_FEATURE_KWARGS = ("out_indices", "feature_cls")

# build(pretrained, **kwargs) -> model: timm's factory or a model entrypoint with the model name bound
Builder = Callable[..., nn.Module]


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

    Without `init` this is exactly `timm.models.create_model`. With it, the model is built by timm (seeded by
    `init_seed`), then initialized by the registered initializer `init` from `init_source` (default: what
    `pretrained=True` would load for this model, `pretrained_cfg_overlay` included); `checkpoint_path` is then
    loaded over it, as timm does. Options of the initializer go in `init_options` or as `init_<option>=`
    keywords (e.g. `init_bn="transfer"`); any other keyword, `init_values` included, goes to timm.
    """
    if init is None:
        check_no_init_keywords(init_source=init_source, init_seed=init_seed, init_options=init_options)
        return timm.models.create_model(model_name, pretrained, *args, **kwargs)
    if args:
        raise InitError(f"init={init!r}: pass timm's arguments after `pretrained` by keyword, got {args!r}")
    checkpoint_path = kwargs.pop("checkpoint_path", None)

    def build(pretrained: bool, **build_kwargs: Any) -> nn.Module:
        return timm.models.create_model(model_name, pretrained, **build_kwargs)

    init_args = dict(init=init, init_source=init_source, init_seed=init_seed, init_options=init_options)
    model = build_initialized(build, model_name, pretrained=pretrained, kwargs=kwargs, **init_args)
    if checkpoint_path:
        timm.models.load_checkpoint(model, checkpoint_path)
    return model


def check_no_init_keywords(**given: Any) -> None:
    """`init_source`, `init_seed` and `init_options` mean nothing without `init`: say so instead of ignoring."""
    stray = [name for name, value in given.items() if value]
    if stray:
        raise InitError(f"{', '.join(stray)} need init=...; valid inits: see timm_transfusion.list_inits()")


def build_initialized(
    build: Builder,
    model_name: str,
    *,
    pretrained: bool,
    kwargs: dict[str, Any],
    init: str,
    init_source: Source | None = None,
    init_seed: int | None = None,
    init_options: dict[str, Any] | None = None,
) -> nn.Module:
    """Build with `build(pretrained, **kwargs)` (seeded), run initializer `init`, wrap for `features_only`."""
    if pretrained:
        raise InitError(
            f"init={init!r} sets the weights: use init='pretrained' (with init_source=...) instead of "
            "pretrained=True"
        )
    entry, _ = resolve_init(init)
    kwargs = dict(kwargs)
    options = dict(init_options or {})
    options.update({name: kwargs.pop(f"init_{name}") for name in entry.options if f"init_{name}" in kwargs})
    check_options(entry, options, source=init_source)

    features_only = kwargs.pop("features_only", False)
    feature_kwargs = {key: kwargs.pop(key) for key in _FEATURE_KWARGS if key in kwargs}
    with seeded(init_seed):
        model = _build(build, model_name, entry.pattern, entry.options, kwargs)
    context = InitContext(model=model, seed=init_seed, source=init_source, reference_state=model.state_dict())
    run_init(context, init, options)
    return _as_features(build, model, kwargs, feature_kwargs) if features_only else model


def _build(
    build: Builder, model_name: str, init: str, init_options: dict[str, Any], kwargs: dict[str, Any]
) -> nn.Module:
    """Build the model with timm; an `init_*` keyword that neither side knows is reported as such."""
    try:
        return build(False, **kwargs)
    except TypeError as error:
        stray = [key for key in kwargs if key.startswith("init_") and key in str(error)]
        if not stray:
            raise
        raise InitOptionError(
            f"{stray[0]!r} is neither an option of init {init!r} (valid: {', '.join(init_options) or 'none'}) "
            f"nor an argument of {model_name}"
        ) from error


def _as_features(
    build: Builder, model: nn.Module, kwargs: dict[str, Any], feature_kwargs: dict[str, Any]
) -> nn.Module:
    """The features_only wrapper of an initialized model, built by timm around the model's state.

    timm wraps a model right after loading its pretrained weights, so the initialized state goes in as the
    pretrained state dict; the wrapper's keys differ from the model's, which is why it is not wrapped here.
    """
    state = model.state_dict()
    head = classifier_keys(model, state)
    kwargs = dict(kwargs)
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {}, source="")
    overlay["state_dict"] = {key: value for key, value in state.items() if key not in head}
    with torch.random.fork_rng():  # the wrapper's own random init is overwritten; keep the caller's RNG
        features = build(True, pretrained_cfg_overlay=overlay, features_only=True, **feature_kwargs, **kwargs)
    features.pretrained_cfg = features.default_cfg = pretrained_cfg_for_features(model.pretrained_cfg)
    return features
