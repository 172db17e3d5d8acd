"""One exception type per kind of mistake in similarity work, each saying what to do next.

All derive from ``SimilarityError``, itself a ``ValueError``, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from ..errors import TransfusionError


class SimilarityError(TransfusionError, ValueError):
    """Base class for similarity errors."""


class ActivationShapeError(SimilarityError):
    """Activations are not (datapoints, features), are not paired, or change size between batches."""


class NonFiniteActivationError(SimilarityError):
    """Activations hold NaN or inf, or their squares overflow float64."""


class NotEnoughDataError(SimilarityError):
    """Too few datapoints: none at all, fewer than a statistic needs, or fewer than the features."""


class SimilarityOptionError(SimilarityError):
    """An option has an unknown name or an invalid value (convention, metric, threshold, dims, ...)."""


class LayerError(SimilarityError):
    """A layer to compare is unknown, missing from a model, or has an unusable output."""


class ModelSourceError(TransfusionError, RuntimeError):
    """A model to compare could not be created from the given run folder, local-dir or timm name."""


class MissingModelError(ModelSourceError, FileNotFoundError):
    """The run folder or local-dir to compare does not exist or holds no config.json."""


class ReportKeyError(TransfusionError, KeyError):
    """A report was asked for a layer or metric it does not hold."""


class ReportPathError(SimilarityError, FileExistsError):
    """A report file cannot be written: something that is not a regular file is in the way."""


class BatchTypeError(TransfusionError, TypeError):
    """A data loader yielded batches in which no images can be found."""


class UnderdeterminedWarning(UserWarning):
    """CCA was computed on fewer datapoints than features (``allow_underdetermined=True``)."""
