"""Representation similarity: exact streaming CCA, SVCCA, PWCCA and linear CKA for any timm model.

Array functions take (datapoints, features) NumPy arrays or torch tensors; each is a thin wrapper over a
``MomentAccumulator`` of float64 sufficient statistics that can also be fed batch by batch, merged with
``+`` and all-reduced across processes. ``compare`` streams images through two timm models and returns a
layer-wise ``SimilarityReport``.
"""

from .capture import LayerCapture, default_layers
from .cca import (
    CONVENTIONS,
    CCAResult,
    canonical_correlation_analysis,
    canonical_correlations,
    projection_weights,
)
from .compare import METRIC_FUNCTIONS, compare
from .errors import (
    ActivationShapeError,
    LayerError,
    NonFiniteActivationError,
    NotEnoughDataError,
    SimilarityError,
    SimilarityOptionError,
    UnderdeterminedWarning,
)
from .metrics import cca, linear_cka, mean_cca, pwcca, svcca
from .moments import Covariance, MomentAccumulator
from .null import UnpairedStream, bias_note, expected_null_sum_squared_cca, unpaired
from .report import LayerSimilarity, SimilarityReport

__all__ = [
    "ActivationShapeError",
    "CONVENTIONS",
    "CCAResult",
    "Covariance",
    "LayerCapture",
    "LayerError",
    "LayerSimilarity",
    "METRIC_FUNCTIONS",
    "MomentAccumulator",
    "NonFiniteActivationError",
    "NotEnoughDataError",
    "SimilarityError",
    "SimilarityOptionError",
    "SimilarityReport",
    "UnderdeterminedWarning",
    "UnpairedStream",
    "bias_note",
    "canonical_correlation_analysis",
    "canonical_correlations",
    "cca",
    "compare",
    "default_layers",
    "expected_null_sum_squared_cca",
    "linear_cka",
    "mean_cca",
    "projection_weights",
    "pwcca",
    "svcca",
    "unpaired",
]
