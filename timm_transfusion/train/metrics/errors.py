"""The error the metric modules raise on a configuration they do not have."""

from __future__ import annotations

from ...errors import TransfusionError


class MetricConfigError(TransfusionError, ValueError):
    """An unknown metric name or metric configuration."""
