"""`create_model`: timm's factory plus `init=`, and the patch that makes `timm.create_model` accept it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import timm
import timm.models
import torch
from timm.models._factory import create_model as timm_create_model
from torch import nn

from .apply import run_init
from .context import InitContext
from .errors import InitError
from .groups import classifier_keys
from .registry import check_options, resolve_init
from .source import Source

_FEATURE_KWARGS = ("out_indices", "feature_cls")


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
    the model's own default pretrained weights). Options of the initializer go in `init_options` or as
    `init_<option>=` keywords (e.g. `init_bn="transfer"`, `init_stats="channel"`).
    """
    options = dict(init_options or {})
    options.update({key[len("init_") :]: kwargs.pop(key) for key in list(kwargs) if key.startswith("init_")})
    if init is None:
        if init_source is not None or init_seed is not None or options:
            raise InitError(
                "init_source, init_seed and init options need init=...; see timm_transfusion.list_inits()"
            )
        return timm_create_model(model_name, pretrained, *args, **kwargs)
    if pretrained or kwargs.get("checkpoint_path"):
        raise InitError(
            f"init={init!r} sets the weights, so pretrained=True / checkpoint_path would be overwritten; "
            "use init='pretrained' with init_source=... for full transfer"
        )
    entry, _ = resolve_init(init)
    check_options(entry, options)

    features_only = kwargs.pop("features_only", False)
    feature_kwargs = {key: kwargs.pop(key) for key in _FEATURE_KWARGS if key in kwargs}
    with _seeded(init_seed):
        model = timm_create_model(model_name, False, *args, **kwargs)
    context = InitContext(
        model=model,
        seed=init_seed,
        source=init_source,
        model_name=model_name,
        pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay"),
        reference_state=model.state_dict(),
    )
    run_init(context, init, options)
    if not features_only:
        return model
    state = model.state_dict()
    head = classifier_keys(model, state)  # the feature extractor has no classifier
    state = {key: value for key, value in state.items() if key not in head}
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {}, state_dict=state, source="")
    with _seeded(0):  # every tensor is overwritten by the loaded state; keep the caller's RNG as it was
        return timm_create_model(
            model_name,
            True,
            *args,
            pretrained_cfg_overlay=overlay,
            features_only=True,
            **feature_kwargs,
            **kwargs,
        )


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's CPU RNG seeded, leaving the caller's RNG state untouched."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def patch_timm() -> None:
    """Make `timm.create_model` and `timm.models.create_model` accept `init=` (idempotent)."""
    timm.create_model = create_model
    timm.models.create_model = create_model
