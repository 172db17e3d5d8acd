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
from .factory import create_model, patch_timm
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
    "list_inits",
    "patch_timm",
    "register_init",
    "resolve_source",
]
