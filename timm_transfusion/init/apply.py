"""Apply a registered initializer to a model in place."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .context import InitContext
from .errors import InitError
from .groups import tied_keys
from .registry import check_options, resolve_init
from .source import Source


def apply_init(
    model: nn.Module, name: str, source: Source | None = None, seed: int | None = None, **options: Any
) -> nn.Module:
    """Initialize `model` in place with the initializer `name` and return it.

    `source` gives the pretrained weights (timm name, `hf-hub:`, `local-dir:`, file, state dict or module;
    default: the model's own default pretrained weights). Tensors set at random get exactly what timm
    gives a fresh model of the same architecture with `seed`.
    """
    return run_init(InitContext(model=model, seed=seed, source=source), name, options)


def run_init(context: InitContext, name: str, options: dict[str, Any]) -> nn.Module:
    """Resolve `name`, check `options`, compute the new state and load it into `context.model`."""
    entry, params = resolve_init(name)
    check_options(entry, options, source=context.source)
    state = entry.fn(context, **params, **options)
    target = context.target_state
    stray = sorted(state.keys() - target.keys())
    if stray:
        raise InitError(f"init {name!r} returned tensors the model does not have, first: {stray[:3]}")
    untouched = target.keys() - state.keys()
    if untouched:
        state.update({key: context.random_state[key] for key in untouched})
    for keys in tied_keys(context.model):  # one tensor under several names gets one value: the first name's
        state.update(dict.fromkeys(keys[1:], state[keys[0]]))
    # tensors that already are the model's own (its seeded timm init) need no copy
    changed = {key: value for key, value in state.items() if value.data_ptr() != target[key].data_ptr()}
    with torch.no_grad():
        context.model.load_state_dict(changed, strict=False)
    return context.model
