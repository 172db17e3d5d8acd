"""compare(): stream images through two models and accumulate layer-wise similarity statistics.

Memory is O(Σ features²) per layer pair, independent of the number of images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .capture import LayerCapture, as_positions, default_layers, match_spatial, subsample_positions
from .errors import LayerError, NotEnoughDataError, SimilarityOptionError
from .metrics import (
    linear_cka_from_moments,
    mean_cca_from_moments,
    pwcca_from_moments,
    svcca_from_moments,
)
from .moments import MomentAccumulator
from .report import LayerSimilarity, SimilarityReport, finite_or_none

METRIC_FUNCTIONS: dict[str, Callable[..., float]] = {
    "mean_cca": lambda m, eps: mean_cca_from_moments(m, epsilon=eps),
    "pwcca": lambda m, eps: pwcca_from_moments(m, epsilon=eps),
    "pwcca_google": lambda m, eps: pwcca_from_moments(m, epsilon=eps, convention="google-svcca"),
    "svcca": lambda m, eps: svcca_from_moments(m, epsilon=eps),
    "linear_cka": lambda m, eps: linear_cka_from_moments(m),
    "linear_cka_debiased": lambda m, eps: linear_cka_from_moments(m, debiased=True),
}


def _images_of(batch) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        for key in ("pixel_values", "image", "images"):
            if key in batch:
                return batch[key]
        raise SimilarityOptionError(
            f"batch dict has keys {sorted(batch)}; expected one of 'pixel_values', 'image', 'images'"
        )
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(
        f"cannot find images in a batch of type {type(batch).__name__}; yield tensors, "
        "(images, labels) tuples or dicts with 'pixel_values'"
    )


def _layer_pairs(model_a: nn.Module, model_b: nn.Module, layers) -> list[tuple[str, str]]:
    if layers is None:
        names_b = set(default_layers(model_b))
        pairs = [(name, name) for name in default_layers(model_a) if name in names_b]
        if not pairs:
            raise LayerError("the two models share no layer names; pass layers=[(name_a, name_b), ...]")
        return pairs
    return [(item, item) if isinstance(item, str) else tuple(item) for item in layers]


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Iterable,
    metrics: Sequence[str] = ("pwcca", "svcca", "linear_cka"),
    layers: Sequence[str | tuple[str, str]] | None = None,
    *,
    max_positions: int | None = 64,
    epsilon: float = 0.0,
    seed: int = 0,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    names: tuple[str, str] = ("A", "B"),
    progress: bool = False,
) -> SimilarityReport:
    """Layer-wise similarity of two models (or one model at two checkpoints) on the images in ``data``.

    data: iterable of image batches (B, 3, H, W) — tensors, (images, labels) tuples or dicts with
        ``pixel_values``; ``preprocess`` (e.g. normalisation on the device) is applied to each batch.
    layers: names shared by both models (default: every common block group), or (name_a, name_b) pairs.
    max_positions: spatial positions (datapoints) kept per image and conv layer, chosen deterministically.
    Layers whose maps differ in size are average-pooled to the smaller one. A metric that is undefined
    for a layer (e.g. fewer datapoints than features) is reported as None with a note.
    """
    unknown = [m for m in metrics if m not in METRIC_FUNCTIONS]
    if unknown:
        raise SimilarityOptionError(f"unknown metrics {unknown}; choose from {list(METRIC_FUNCTIONS)}")
    pairs = _layer_pairs(model_a, model_b, layers)
    capture_a = LayerCapture(model_a, [a for a, _ in pairs])
    capture_b = LayerCapture(model_b, [b for _, b in pairs])
    device = _device_of(model_a)
    fourth_moments = "linear_cka_debiased" in metrics
    accumulators = [MomentAccumulator(device=device, fourth_moments=fourth_moments) for _ in pairs]
    modes = (model_a.training, model_b.training)
    model_a.eval()
    model_b.eval()
    images_seen = 0
    try:
        for batch in tqdm(data, desc="similarity", unit="batch", disable=not progress):
            images = _images_of(batch).to(device)
            if preprocess is not None:
                images = preprocess(images)
            acts_a, acts_b = capture_a(images), capture_b(images.to(_device_of(model_b)))
            for (name_a, name_b), accumulator in zip(pairs, accumulators, strict=True):
                a, b = match_spatial(acts_a[name_a], acts_b[name_b].to(device))
                a, b = as_positions(a), as_positions(b)
                if a.shape[1] != b.shape[1]:
                    raise LayerError(
                        f"layers {name_a!r} and {name_b!r} have {a.shape[1]} and {b.shape[1]} "
                        "positions per image; compare layers with matching token counts"
                    )
                accumulator.update(*subsample_positions(a, b, images_seen, max_positions, seed))
            images_seen += images.shape[0]
    finally:
        model_a.train(modes[0])
        model_b.train(modes[1])
    if images_seen == 0:
        raise NotEnoughDataError("data yielded no images")
    entries = [
        _layer_entry(pair, accumulator, metrics, epsilon)
        for pair, accumulator in zip(pairs, accumulators, strict=True)
    ]
    settings = {"max_positions": max_positions, "epsilon": epsilon, "seed": seed}
    return SimilarityReport(names[0], names[1], tuple(metrics), entries, images_seen, settings)


def _layer_entry(pair, accumulator: MomentAccumulator, metrics, epsilon: float) -> LayerSimilarity:
    values: dict[str, float | None] = {}
    notes = []
    for metric in metrics:
        try:
            values[metric] = finite_or_none(METRIC_FUNCTIONS[metric](accumulator, epsilon))
        except ValueError as error:
            values[metric] = None
            notes.append(f"{metric}: {error}")
    features_a, features_b = accumulator.features
    note = "; ".join(dict.fromkeys(notes)) or None
    return LayerSimilarity(pair[0], pair[1], features_a, features_b, accumulator.n, values, note)
