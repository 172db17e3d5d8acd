"""Errors and warnings of experiments: what a report's statistics cannot compute from the runs they are given,
and the cells a grid leaves out."""

from __future__ import annotations

from ..errors import TransfusionError


class AnalysisError(TransfusionError, ValueError):
    """An analysis asked for what its inputs cannot give: too few evaluations or images, an unknown metric or
    claim, a margin that is not positive."""


class AnalysisKeyError(TransfusionError, KeyError):
    """A metric or init that the analysed results do not hold."""


class SkippedCellWarning(UserWarning):
    """A grid with several models left out an init one of them cannot take (a slim model and full transfer);
    the other models still run it. ``plan.json`` lists every skipped pair under ``skipped``."""
