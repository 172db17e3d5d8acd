"""What an initializer sees: the model, its seed, and lazily resolved source and random states."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from .errors import InitError
from .source import Source, resolve_source


@dataclass
class InitContext:
    """Inputs of one initialization; the source and the random reference are built only when asked for.

    `reference_state` is the model's state as timm built it with `seed` (known when the plugin created
    the model); otherwise an identical fresh model is built to provide it.
    """

    model: nn.Module
    seed: int | None = None
    source: Source | None = None
    model_name: str | None = None
    pretrained_cfg_overlay: dict[str, Any] | None = None
    reference_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @cached_property
    def source_state(self) -> dict[str, torch.Tensor]:
        return resolve_source(
            self.source,
            model_name=self.model_name or _default_weights_name(self.model),
            pretrained_cfg_overlay=self.pretrained_cfg_overlay,
        )

    @cached_property
    def target_state(self) -> dict[str, torch.Tensor]:
        """The model's current state: the keys, shapes, dtypes and devices to produce."""
        return self.model.state_dict()

    @cached_property
    def random_state(self) -> dict[str, torch.Tensor]:
        """The state timm gives a freshly created model of the same architecture and arguments with `seed`."""
        if self.reference_state is not None:
            return self.reference_state
        return _fresh_state(self.model, self.seed)

    @cached_property
    def generator(self) -> torch.Generator | None:
        """Generator for sampled weights: seeded when `seed` is given, else torch's global RNG."""
        return None if self.seed is None else torch.Generator().manual_seed(self.seed)


def _default_weights_name(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    architecture, tag = cfg.get("architecture"), cfg.get("tag")
    if not architecture:
        return None
    return f"{architecture}.{tag}" if tag else architecture


def _fresh_state(model: nn.Module, seed: int | None) -> dict[str, torch.Tensor]:
    from .factory import timm_create_model

    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not architecture:
        raise InitError(
            f"cannot rebuild {type(model).__name__} for its random initialization: it was not created by "
            "timm.create_model (no pretrained_cfg['architecture'])"
        )
    model_args = dict(getattr(model, "_model_args", {}))
    if hasattr(model, "num_classes"):
        model_args.setdefault("num_classes", model.num_classes)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        fresh = timm_create_model(architecture, **model_args)
    state = fresh.state_dict()
    current = model.state_dict()
    if state.keys() != current.keys() or any(state[k].shape != current[k].shape for k in state):
        raise InitError(
            f"rebuilding {architecture} with {model_args} does not give the model's layout; "
            "create the model with timm_transfusion.create_model(..., init=...) instead"
        )
    return state
