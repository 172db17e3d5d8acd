"""Exception types for dataset problems, raised before any training starts."""

from __future__ import annotations


class DatasetSpecError(ValueError):
    """A dataset spec that cannot be understood or loaded (bad kind, missing file, absent split or column)."""


class LabelError(ValueError):
    """Labels that do not fit the task (outside ``num_classes``, wrong shape, empty split)."""
