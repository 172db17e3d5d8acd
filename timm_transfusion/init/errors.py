"""One exception type per kind of user mistake, each saying what to do next."""

from __future__ import annotations

from ..errors import TransfusionError


class InitError(TransfusionError, ValueError):
    """Base class for initializer errors."""


class UnknownInitError(InitError):
    """The initializer name is not registered."""


class InitOptionError(InitError):
    """An option of an initializer has an invalid name or value."""


class BlockIndexError(InitError):
    """`transfusion-k` asked for more block groups than the model has."""


class GroupMatcherError(InitError):
    """The model does not define `group_matcher`, so its block groups are unknown."""


class SourceError(InitError):
    """The init source could not be resolved or read."""


class SourceMismatchError(SourceError):
    """The source's tensors do not match the model's."""


class SourceUnavailableError(SourceError):
    """The source weights could not be fetched (offline, not cached, or no download location)."""


class ScaleError(InitError):
    """The weight-scale analysis has no tensor it can compare (no positive standard deviation)."""
