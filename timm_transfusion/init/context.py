"""What an initializer sees: the model, its seed, and lazily resolved source and random states."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import timm.models
import torch
from torch import nn

from .errors import InitError
from .model_args import model_args as recreation_args
from .seeding import seeded
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
    reference_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @cached_property
    def source_state(self) -> dict[str, torch.Tensor]:
        return resolve_source(self.source, model=self.model)

    @property
    def model_name(self) -> str:
        """The architecture's name, for messages."""
        return (getattr(self.model, "pretrained_cfg", None) or {}).get("architecture") or type(
            self.model
        ).__name__

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


def _fresh_state(model: nn.Module, seed: int | None) -> dict[str, torch.Tensor]:
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not architecture:
        raise InitError(
            f"cannot rebuild {type(model).__name__} for its random initialization: it was not created by "
            "timm.create_model (no pretrained_cfg['architecture'])"
        )
    model_args = recreation_args(model)
    with seeded(seed):
        fresh = timm.models.create_model(architecture, **model_args)
    state = fresh.state_dict()
    current = model.state_dict()
    if state.keys() != current.keys() or any(state[k].shape != current[k].shape for k in state):
        raise InitError(
            f"rebuilding {architecture} with {model_args} does not give the model's layout; "
            "create the model with timm_transfusion.create_model(..., init=...) instead"
        )
    return state
