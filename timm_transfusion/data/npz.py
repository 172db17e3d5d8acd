"""MedMNIST-layout ``.npz`` files -> ``datasets.Dataset``.

The file holds ``{split}_images`` (N, H, W) or (N, H, W, C) and ``{split}_labels`` (N, 1) for single-label
or (N, K) multi-hot for multi-label tasks. Grayscale images become 3 channels. Pixel values are read by their
range (see ``as_uint8``): uint8 as is, integers within 0..255, floats within [0, 1] (scaled by 255) or within
[0, 255] (rounded); anything else, and NaN or infinite pixels, is refused rather than cast.
"""

from __future__ import annotations

import functools
from pathlib import Path

import datasets
import numpy as np

from .errors import DatasetSpecError
from .features import image_label_features


def npz_splits(path: Path) -> list[str]:
    """Split names present in the file (those with both images and labels)."""
    with np.load(path) as data:
        keys = set(data.files)
    return sorted(k[: -len("_images")] for k in keys if k.endswith("_images") and f"{k[:-7]}_labels" in keys)


def as_uint8(images: np.ndarray, where: str) -> np.ndarray:
    """Pixels as uint8 by their range; a plain cast would turn [0, 1] floats into all-black images."""
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.bool_ or not np.issubdtype(images.dtype, np.number):
        raise DatasetSpecError(f"{where} holds {images.dtype} pixels; store uint8, integers 0..255 or floats")
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        bad = int(np.size(images) - np.isfinite(images).sum())
        raise DatasetSpecError(f"{where} has {bad} NaN or infinite pixels; fix or drop those images")
    low, high = (images.min(), images.max()) if images.size else (0, 0)
    if np.issubdtype(images.dtype, np.floating) and low >= 0 and high <= 1:
        return np.round(images * 255).astype(np.uint8)
    if low >= 0 and high <= 255:
        return np.round(images).astype(np.uint8)
    raise DatasetSpecError(
        f"{where} holds {images.dtype} pixels in [{float(low):g}, {float(high):g}]; expected uint8, integers 0..255, "
        "or floats in [0, 1] or [0, 255]: rescale the images first"
    )


def load_npz(path: str | Path, split: str) -> datasets.Dataset:
    """Load one split of a MedMNIST-layout file as a Dataset with ``image`` (RGB) and ``label`` columns.

    Kept in memory per (file, size, mtime, split): an experiment grid trains many runs on the same split in
    one process, and building the Dataset (every image encoded) cost more than a short run's training.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetSpecError(f"npz file {str(path)!r} does not exist")
    stat = path.stat()
    return _load_npz(path.resolve(), stat.st_size, stat.st_mtime_ns, split)


@functools.lru_cache(maxsize=8)
def _load_npz(path: Path, size: int, mtime_ns: int, split: str) -> datasets.Dataset:
    with np.load(path) as data:
        keys = set(data.files)
        image_key, label_key = f"{split}_images", f"{split}_labels"
        missing = [k for k in (image_key, label_key) if k not in keys]
        if missing:
            raise DatasetSpecError(
                f"{path} has no {', '.join(repr(k) for k in missing)} for split {split!r}; "
                f"splits in the file: {npz_splits(path)} (keys: {sorted(keys)})"
            )
        images, labels = data[image_key], data[label_key]
        all_labels = np.concatenate([data[f"{s}_labels"] for s in npz_splits(path)])
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DatasetSpecError(
            f"{path}:{image_key} has shape {images.shape}; expected (N, H, W) or (N, H, W, 3)"
        )
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    images = as_uint8(images, f"{path}:{image_key}")
    if len(labels) != len(images):
        raise DatasetSpecError(f"{path}: {len(images)} images but {len(labels)} labels in split {split!r}")
    if labels.size and not (
        np.issubdtype(labels.dtype, np.integer) or np.array_equal(labels, np.round(labels))
    ):
        raise DatasetSpecError(
            f"{path}:{label_key} holds non-integer labels such as {labels.reshape(-1)[:3].tolist()}; "
            "store class indices (or 0/1 multi-hot targets)"
        )
    labels = labels.reshape(len(labels), int(np.prod(labels.shape[1:]))).astype(np.int64)
    multilabel = labels.shape[1] > 1
    num_classes = labels.shape[1] if multilabel else int(all_labels.max()) + 1 if all_labels.size else 0
    label_values = labels.tolist() if multilabel else labels[:, 0].tolist()
    features = image_label_features(num_classes, multilabel=multilabel)
    return datasets.Dataset.from_dict({"image": list(images), "label": label_values}, features=features)
