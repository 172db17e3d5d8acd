"""Initializers: random, pretrained, meanvar, transfusion-k and hybrids, in a registry others can extend."""

from . import initializers as _builtins  # noqa: F401  (registers the built-in initializers)
from . import rescaled as _rescaled  # noqa: F401  (registers `rescaled`)
from .apply import apply_init
from .errors import (
    BlockIndexError,
    GroupMatcherError,
    InitError,
    InitOptionError,
    SourceError,
    SourceMismatchError,
    SourceUnavailableError,
    UnknownInitError,
)
from .extension import disable_timm_init, enable_timm_init, timm_init_enabled
from .factory import create_model
from .groups import BlockGroups, block_groups
from .registry import list_inits, register_init
from .source import resolve_source

__all__ = [
    "BlockGroups",
    "BlockIndexError",
    "GroupMatcherError",
    "InitError",
    "InitOptionError",
    "SourceError",
    "SourceMismatchError",
    "SourceUnavailableError",
    "UnknownInitError",
    "apply_init",
    "block_groups",
    "create_model",
    "disable_timm_init",
    "enable_timm_init",
    "list_inits",
    "register_init",
    "resolve_source",
    "timm_init_enabled",
]
