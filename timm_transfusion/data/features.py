"""The column schema every dataset spec produces: ``image`` (PIL RGB) and ``label``."""

from __future__ import annotations

import datasets


def image_label_features(
    num_classes: int, *, multilabel: bool, names: list[str] | None = None
) -> datasets.Features:
    """``label`` is a ClassLabel (single-label) or a fixed-length multi-hot list of int (multi-label)."""
    if multilabel:
        label = datasets.List(datasets.Value("int64"), length=num_classes)
    else:
        label = datasets.ClassLabel(names=names) if names else datasets.ClassLabel(num_classes=num_classes)
    return datasets.Features({"image": datasets.Image(mode="RGB"), "label": label})
