"""Errors of the experiment analyses: what a report's statistics cannot compute from the runs they are given."""

from __future__ import annotations

from ..errors import TransfusionError


class AnalysisError(TransfusionError, ValueError):
    """An analysis asked for what its inputs cannot give: too few evaluations or images, an unknown metric or
    claim, a margin that is not positive."""


class AnalysisKeyError(TransfusionError, KeyError):
    """A metric or init that the analysed results do not hold."""
