"""The error the metric modules raise on a configuration they do not have."""

from __future__ import annotations

# Absolute: evaluate.load copies a metric script and its relative imports into its own module cache, where
# a relative import above this package would not resolve.
from timm_transfusion.errors import TransfusionError


class MetricConfigError(TransfusionError, ValueError):
    """An unknown metric name or metric configuration."""
