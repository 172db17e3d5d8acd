"""compare(): stream images through two models and accumulate layer-wise similarity statistics.

Memory is O(Σ features²) per layer pair, independent of the number of images.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .capture import (
    PRE_LOGITS,
    LayerCapture,
    as_positions,
    default_layers,
    match_spatial,
    subsample_positions,
)
from .cca import check_epsilon
from .errors import BatchTypeError, LayerError, NotEnoughDataError, SimilarityOptionError
from .moments import MomentAccumulator
from .null import UnpairedStream, bias_note
from .report import LayerSimilarity, SimilarityReport, finite_or_none
from .resample import GroupedMoments, check_replicate_weights
from .scores import (
    linear_cka_from_moments,
    mean_cca_from_moments,
    pwcca_from_moments,
    svcca_from_moments,
)

METRIC_FUNCTIONS: dict[str, Callable[..., float]] = {
    "mean_cca": lambda m, eps: mean_cca_from_moments(m, epsilon=eps),
    "pwcca": lambda m, eps: pwcca_from_moments(m, epsilon=eps),
    "pwcca_google": lambda m, eps: pwcca_from_moments(m, epsilon=eps, convention="google-svcca"),
    "svcca": lambda m, eps: svcca_from_moments(m, epsilon=eps),
    "linear_cka": lambda m, eps: linear_cka_from_moments(m),
    "linear_cka_debiased": lambda m, eps: linear_cka_from_moments(m, debiased=True),
}

Preprocess = Callable[[torch.Tensor], torch.Tensor]


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
    raise BatchTypeError(
        f"cannot find images in a batch of type {type(batch).__name__}; yield tensors, "
        "(images, labels) tuples or dicts with 'pixel_values'"
    )


def _batch_images(batch) -> torch.Tensor:
    """The (B, C, H, W) images of one batch; a single tensor passed as ``data`` yields (C, H, W) ones."""
    images = _images_of(batch)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise SimilarityOptionError(
            f"data must yield batches (B, C, H, W); got {shape}. Pass a DataLoader or a list of batches "
            "(e.g. [images]), not a single tensor"
        )
    return images


def _input_channels(model: nn.Module) -> int | None:
    """The image channels the model takes: its ``in_chans`` (timm sets it on its models), else those of
    ``pretrained_cfg['first_conv']``, if known.

    ``in_chans`` comes first: tresnet's first conv follows a space-to-depth (48 channels for RGB), and
    ``pretrained_cfg['input_size']`` keeps the pretrained 3 when ``in_chans`` differs.
    """
    channels = getattr(model, "in_chans", None)
    if isinstance(channels, int) and not isinstance(channels, bool):
        return channels
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    if isinstance(first_conv, (tuple, list)):
        first_conv = first_conv[0] if first_conv else None
    if not isinstance(first_conv, str):
        return None
    try:
        channels = model.get_submodule(first_conv).in_channels
    except AttributeError:
        return None
    return channels if isinstance(channels, int) else None


def _model_input(
    images: torch.Tensor, model: nn.Module, preprocess: Preprocess | None, side: str
) -> torch.Tensor:
    """``images`` on the model's device after ``preprocess``, checked: floating point, the model's channels."""
    images = images.to(_device_of(model))
    if preprocess is not None:
        images = preprocess(images)
    name = f"model {side} ({type(model).__name__})"
    if not images.is_floating_point():
        raise SimilarityOptionError(
            f"images for {name} are {images.dtype}; models need normalised floating-point images: pass "
            "preprocess= (e.g. the normalisation that similarity.sources.image_batches returns)"
        )
    channels = _input_channels(model)
    if channels is not None and images.shape[1] != channels:
        raise SimilarityOptionError(
            f"images have {images.shape[1]} channels but {name} expects {channels}; convert the images "
            "or build the model with matching in_chans"
        )
    return images


def _pair(item) -> tuple[str, str]:
    if isinstance(item, str):
        return item, item
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(n, str) for n in item):
        return item[0], item[1]
    raise SimilarityOptionError(f"layers must be names or (name_a, name_b) pairs; got {item!r}")


def _feature_layers(model: nn.Module) -> list[tuple[str, int]]:
    return [(info["module"], info["reduction"]) for info in getattr(model, "feature_info", [])]


def _pairs_by_reduction(model_a: nn.Module, model_b: nn.Module) -> list[tuple[str, str]]:
    """For each reduction both models have, A's last layer at it with B's last, in A's order."""
    last_a = {reduction: name for name, reduction in _feature_layers(model_a)}
    last_b = {reduction: name for name, reduction in _feature_layers(model_b)}
    return [
        (name, last_b[reduction])
        for name, reduction in _feature_layers(model_a)
        if last_a[reduction] == name and reduction in last_b
    ]


def _default_pairs(model_a: nn.Module, model_b: nn.Module) -> list[tuple[str, str]]:
    """Same architecture (same layers and reductions): every layer by name. Otherwise by reduction."""
    names_a, names_b = default_layers(model_a), default_layers(model_b)
    if names_a == names_b and _feature_layers(model_a) == _feature_layers(model_b):
        pairs = [(name, name) for name in names_a]
    else:
        pairs = _pairs_by_reduction(model_a, model_b)
        if PRE_LOGITS in names_a and PRE_LOGITS in names_b:
            pairs.append((PRE_LOGITS, PRE_LOGITS))
    if not pairs:
        raise LayerError(
            f"no default layer pairs for {type(model_a).__name__} (layers {names_a}, reductions "
            f"{_feature_layers(model_a)}) and {type(model_b).__name__} (layers {names_b}, reductions "
            f"{_feature_layers(model_b)}); pass layers=[(name_a, name_b), ...]"
        )
    return pairs


def _layer_pairs(model_a: nn.Module, model_b: nn.Module, layers) -> list[tuple[str, str]]:
    if layers is None:
        return _default_pairs(model_a, model_b)
    return [_pair(item) for item in ([layers] if isinstance(layers, str) else layers)]


@contextmanager
def _evaluating(*models: nn.Module) -> Iterator[None]:
    """Every module in eval mode; each module's own ``training`` flag restored afterwards (frozen BN)."""
    modes = {module: module.training for model in models for module in model.modules()}
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _checked_options(metrics, max_positions, epsilon) -> tuple[str, ...]:
    """``metrics`` as a tuple (one name may be a str), validated with ``max_positions`` and ``epsilon``
    (before any image is read: a bad option would otherwise become a note on every layer)."""
    check_epsilon(epsilon)
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in METRIC_FUNCTIONS]
    if unknown:
        raise SimilarityOptionError(f"unknown metrics {unknown}; choose from {list(METRIC_FUNCTIONS)}")
    valid = max_positions is None or (
        isinstance(max_positions, int) and not isinstance(max_positions, bool) and max_positions > 0
    )
    if not valid:
        raise SimilarityOptionError(
            f"max_positions must be a positive integer or None; got {max_positions!r}"
        )
    return metrics


@torch.no_grad()
def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Iterable,
    metrics: Sequence[str] | str = ("pwcca", "svcca", "linear_cka"),
    layers: Sequence[str | tuple[str, str]] | str | None = None,
    *,
    max_positions: int | None = 64,
    epsilon: float = 0.0,
    seed: int = 0,
    preprocess: Preprocess | None = None,
    preprocess_b: Preprocess | None = None,
    names: tuple[str, str] = ("A", "B"),
    null: bool = True,
    replicate_weights: np.ndarray | None = None,
    progress: bool = False,
) -> SimilarityReport:
    """Layer-wise similarity of two models (or one model at two checkpoints) on the images in ``data``.

    data: iterable of image batches (B, C, H, W) — tensors, (images, labels) tuples or dicts with
        ``pixel_values``; ``preprocess`` (e.g. normalisation on the device) is applied to each batch for
        model A, and ``preprocess_b`` (default: ``preprocess``) for model B, so each model can get its own
        mean/std. The models need floating-point images with their ``in_chans`` channels.
    metrics: metric names (or one name).
    layers: names present in both models, ``(name_a, name_b)`` pairs, or one name. Default: for the same
        architecture every block group by name; otherwise, for each feature reduction both models have,
        the last layer of A at it with the last of B at it, plus ``pre_logits`` (reported as ``a|b``).
    max_positions: spatial positions (datapoints) kept per image and conv layer, chosen deterministically.
    Layers whose maps differ in size are average-pooled to the smaller one. A metric that is undefined
    for a layer (e.g. fewer datapoints than features) is reported as None with a note.
    null: also compute every metric on unpaired activations (A's image i against B's image i+1, see
    ``similarity.null``): what unrelated representations score at the same n and d. Layers with fewer
    than 10 datapoints per feature get a bias note.
    replicate_weights: (resamples, G) weights of G groups of images (image i in group i mod G), e.g.
        bootstrap counts from ``train.stats``; each layer then also holds every metric of every resample
        (``LayerSimilarity.replicates``), for intervals over images. The same weights for two reports pair
        their resamples.
    """
    metrics = _checked_options(metrics, max_positions, epsilon)
    replicate_weights = check_replicate_weights(replicate_weights)
    groups = 1 if replicate_weights is None else replicate_weights.shape[1]
    preprocess_b = preprocess if preprocess_b is None else preprocess_b
    pairs = _layer_pairs(model_a, model_b, layers)
    capture_a = LayerCapture(model_a, [a for a, _ in pairs])
    capture_b = LayerCapture(model_b, [b for _, b in pairs])
    device = _device_of(model_a)
    fourth_moments = "linear_cka_debiased" in metrics
    accumulators = [
        [MomentAccumulator(device=device, fourth_moments=fourth_moments) for _ in range(groups)]
        for _ in pairs
    ]
    unpaired = [UnpairedStream(device=device, fourth_moments=fourth_moments) for _ in pairs] if null else []
    images_seen = 0
    with _evaluating(model_a, model_b):
        for batch in tqdm(data, desc="similarity", unit="batch", disable=not progress):
            images = _batch_images(batch)
            acts_a = capture_a(_model_input(images, model_a, preprocess, "A"))
            acts_b = capture_b(_model_input(images, model_b, preprocess_b, "B"))
            for index, (name_a, name_b) in enumerate(pairs):
                a, b = match_spatial(acts_a[name_a], acts_b[name_b].to(device))
                a, b = as_positions(a), as_positions(b)
                if a.shape[1] != b.shape[1]:
                    raise LayerError(
                        f"layers {name_a!r} and {name_b!r} have {a.shape[1]} and {b.shape[1]} "
                        "positions per image; compare layers with matching token counts"
                    )
                kept_a, kept_b = subsample_positions(a, b, images_seen, max_positions, seed)
                per_image = (images.shape[0], -1)
                kept_a, kept_b = (
                    kept_a.reshape(*per_image, a.shape[2]),
                    kept_b.reshape(*per_image, b.shape[2]),
                )
                _update_groups(accumulators[index], kept_a, kept_b, images_seen)
                if null:
                    unpaired[index].update(kept_a, kept_b)
            images_seen += images.shape[0]
    if images_seen == 0:
        raise NotEnoughDataError("data yielded no images")
    nulls = [stream.finish() for stream in unpaired] if null else [None] * len(pairs)
    entries = [
        _layer_entry(pair, layer_groups, metrics, epsilon, null_moments, replicate_weights)
        for pair, layer_groups, null_moments in zip(pairs, accumulators, nulls, strict=True)
    ]
    settings = {"max_positions": max_positions, "epsilon": epsilon, "seed": seed, "null": null}
    return SimilarityReport(names[0], names[1], metrics, entries, images_seen, settings)


def _metric_values(
    accumulator: MomentAccumulator, metrics, epsilon: float
) -> tuple[dict[str, float | None], list[str]]:
    """metric -> value (None where undefined) and the notes saying why."""
    values: dict[str, float | None] = {}
    notes = []
    for metric in metrics:
        try:
            values[metric] = finite_or_none(METRIC_FUNCTIONS[metric](accumulator, epsilon))
        except ValueError as error:
            values[metric] = None
            notes.append(f"{metric}: {error}")
    return values, notes


def _update_groups(
    groups: list[MomentAccumulator], a: torch.Tensor, b: torch.Tensor, first_image: int
) -> None:
    """Add a batch (images, positions, features) to the accumulators of its images' groups (i mod G)."""
    if len(groups) == 1:
        groups[0].update(a.reshape(-1, a.shape[2]), b.reshape(-1, b.shape[2]))
        return
    ids = torch.arange(first_image, first_image + a.shape[0]) % len(groups)
    for group in ids.unique().tolist():
        rows = (ids == group).to(a.device)
        groups[group].update(a[rows].reshape(-1, a.shape[2]), b[rows].reshape(-1, b.shape[2]))


def _replicates(
    groups: list[MomentAccumulator], metrics, epsilon: float, weights: np.ndarray
) -> dict[str, list[float | None]]:
    """Every metric (but debiased CKA, which needs fourth-order sums) of every resample of the groups."""
    resampled = [m for m in metrics if m != "linear_cka_debiased"]
    if not resampled:
        return {}
    grouped = GroupedMoments(groups)
    replicates: dict[str, list[float | None]] = {m: [] for m in resampled}
    for row in weights:
        values = _metric_values(grouped.weighted(row), resampled, epsilon)[0]
        for metric in resampled:
            replicates[metric].append(values[metric])
    return replicates


def _layer_entry(
    pair,
    groups: list[MomentAccumulator],
    metrics,
    epsilon: float,
    null_moments: MomentAccumulator | None,
    replicate_weights: np.ndarray | None,
) -> LayerSimilarity:
    accumulator = functools.reduce(operator.add, groups)
    values, notes = _metric_values(accumulator, metrics, epsilon)
    null_values = _metric_values(null_moments, metrics, epsilon)[0] if null_moments is not None else {}
    features_a, features_b = accumulator.features
    biased = bias_note(accumulator.n, features_a, features_b)
    note = "; ".join(dict.fromkeys(notes + ([biased] if biased else []))) or None
    replicates = {} if replicate_weights is None else _replicates(groups, metrics, epsilon, replicate_weights)
    return LayerSimilarity(
        pair[0],
        pair[1],
        features_a,
        features_b,
        accumulator.n,
        values,
        note,
        null=null_values,
        replicates=replicates,
    )
