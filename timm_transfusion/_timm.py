"""The one place that touches timm's private APIs; every other module uses timm's public names.

Each item says why no public name serves. ``pyproject.toml`` bounds timm above at the newest minor release
``tests/test_timm_adapter.py`` checked these against, so a timm that moves them fails at install, not at use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# The name -> entrypoint table that ``timm.create_model`` looks each model up in (``model_entrypoint``).
# Replacing the table object is how ``init=`` reaches every entrypoint without rebinding any timm name.
from timm.models import _registry

# The pretrained cfg timm gives a ``features_only`` wrapper (classifier and pooling removed).
from timm.models._builder import pretrained_cfg_for_features

# The EfficientNet block-string decoder: a slim MobileNet sets each block group's width, which timm's MobileNet-V1
# generator cannot.
from timm.models._efficientnet_builder import decode_arch_def

# The block index arithmetic of ``forward_intermediates`` (negative indices, ``max_index``); timm's own models
# use it, and the CBR models follow their API exactly.
from timm.models._features import feature_take_indices

# ``group_with_matcher(..., reverse=True)`` maps every state-dict key (buffers too) to its block group; timm's
# public ``group_parameters`` / ``group_modules`` give parameters or modules only, not buffers.
from timm.models._manipulate import group_with_matcher

# timm's MobileNet-V1 generator (the registered entrypoints fix width >= 1.0 and ReLU6; mobilenetv1_025 needs width
# 0.25 with ReLU and the same block definitions) and the EfficientNet builder the slim variants hand decoded blocks.
from timm.models.efficientnet import _create_effnet, _gen_mobilenet_v1

__all__ = [
    "decode_arch_def",
    "drop_model_args",
    "entrypoint_table",
    "feature_take_indices",
    "group_with_matcher",
    "pretrained_cfg_for_features",
    "set_entrypoint_table",
    "_create_effnet",
    "_gen_mobilenet_v1",
]


def entrypoint_table() -> dict[str, Callable[..., Any]]:
    """The dict timm's ``model_entrypoint`` reads (registered model name -> entrypoint function)."""
    return _registry._model_entrypoints


def set_entrypoint_table(table: dict[str, Callable[..., Any]]) -> None:
    """Make ``table`` the dict timm registers models in and looks them up from."""
    _registry._model_entrypoints = table


def drop_model_args(model: Any, keys: Iterable[str]) -> None:
    """Remove ``keys`` from the factory keywords timm records on a model (``_model_args``, timm >= 1.0.2x).

    ``timm.create_model`` records every keyword it was given, ``init=`` ones included, and ``save_for_hf``
    writes them into config.json; a reloaded model must not get them again (stock timm does not know them).
    """
    recorded = getattr(model, "_model_args", None)
    if isinstance(recorded, dict):
        model._model_args = {key: value for key, value in recorded.items() if key not in set(keys)}
