"""Exception types for dataset problems, raised before any training starts."""

from __future__ import annotations

from ..errors import TransfusionError


class DatasetSpecError(TransfusionError, ValueError):
    """A dataset spec that cannot be understood or loaded (bad kind, missing file, absent split or column)."""


class LabelError(TransfusionError, ValueError):
    """Labels that do not fit the task (outside ``num_classes``, wrong shape, empty split)."""


class PipelineError(TransfusionError, ValueError):
    """An input pipeline the data cannot take (``--pipeline device`` on mixed sizes) or an unknown name."""
