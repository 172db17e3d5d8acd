"""`timm.create_model(name, init=...)`: the extension, and how to switch it off.

timm's factory looks every model up in its entrypoint table (`model_entrypoint(name)`) and passes every keyword
it was given to that entrypoint. The extension makes that table an `InitEntrypoints` dict: registering stays
plain `dict` storage (so models registered later are covered too), and a lookup hands timm an `InitEntrypoint`
that calls the stock entrypoint unchanged unless an `init` keyword is present. No timm name is rebound, so
`from timm import create_model` bound before `import timm_transfusion` takes `init=` as well.

Switch it off with `timm_transfusion.disable_timm_init()` (or `TIMM_TRANSFUSION_TIMM_INIT=0` in the environment
before the import): timm's table is a plain dict of its own functions again; `timm_transfusion.create_model`
keeps working.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

from .._timm import entrypoint_table, set_entrypoint_table
from .factory import build_initialized, check_no_init_keywords
from .model_args import INIT_KEYWORDS, forget_init_keywords_on_save

ENV_SWITCH = "TIMM_TRANSFUSION_TIMM_INIT"


class InitEntrypoint:
    """A model entrypoint as timm_transfusion hands it to timm: stock unless `init=` is given."""

    def __init__(self, model_name: str, fn: Callable[..., nn.Module]) -> None:
        self.model_name, self.fn = model_name, fn

    def __repr__(self) -> str:
        return (
            f"timm_transfusion.InitEntrypoint({self.model_name!r}, {self.fn.__module__}.{self.fn.__name__})"
        )

    def __call__(self, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        if not any(key in kwargs for key in INIT_KEYWORDS):
            return self.fn(pretrained=pretrained, **kwargs)
        init_args = {key: kwargs.pop(key) for key in INIT_KEYWORDS if key in kwargs}
        if init_args.get("init") is None:
            check_no_init_keywords(**{key: value for key, value in init_args.items() if key != "init"})

        def build(pretrained: bool, **build_kwargs: Any) -> nn.Module:
            return self.fn(pretrained=pretrained, **build_kwargs)

        model = build_initialized(build, self.model_name, pretrained=pretrained, kwargs=kwargs, **init_args)
        return forget_init_keywords_on_save(model)


class InitEntrypoints(dict):
    """timm's model-name -> entrypoint table whose lookups return `InitEntrypoint`s (storage is unchanged)."""

    def __getitem__(self, model_name: str) -> InitEntrypoint:
        return InitEntrypoint(model_name, super().__getitem__(model_name))


def enable_timm_init() -> None:
    """Let `timm.create_model` (however it was imported) take `init=` (idempotent)."""
    table = entrypoint_table()
    if not isinstance(table, InitEntrypoints):
        set_entrypoint_table(InitEntrypoints(table))


def disable_timm_init() -> None:
    """Give timm back a plain entrypoint table: `timm.create_model` is stock again (idempotent)."""
    table = entrypoint_table()
    if isinstance(table, InitEntrypoints):
        set_entrypoint_table(dict(table))


def timm_init_enabled() -> bool:
    """Whether `timm.create_model` currently takes `init=`."""
    return isinstance(entrypoint_table(), InitEntrypoints)


def enable_unless_switched_off() -> None:
    """Called on `import timm_transfusion`: enable the extension unless `TIMM_TRANSFUSION_TIMM_INIT=0`."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off"):
        enable_timm_init()
