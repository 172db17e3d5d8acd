"""What the ``label`` column says about the task: number of classes and single- vs multi-label."""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np

from .errors import LabelError


@dataclass(frozen=True)
class LabelInfo:
    """``num_classes`` outputs; ``multilabel``: several binary labels per image (sigmoid + BCE)."""

    num_classes: int
    multilabel: bool
    names: list[str] | None = None


def label_info(ds: datasets.Dataset, num_classes: int | None = None) -> LabelInfo:
    """Infer the task from the ``label`` feature (ClassLabel, fixed-length list, or int values)."""
    feature = ds.features["label"]
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        raise LabelError(
            f"the label column lists class indices per image ({inner.num_classes} classes); give multi-label "
            "targets as fixed-length 0/1 lists (multi-hot) or as several 0/1 label columns (--label-column a,b,c)"
        )
    if isinstance(feature, (datasets.List, datasets.Sequence, datasets.LargeList)) or isinstance(
        feature, list
    ):
        length = getattr(feature, "length", -1)
        if length is None or length < 0:
            length = len(ds[0]["label"]) if len(ds) else 0
        return LabelInfo(num_classes or length, True)
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        if num_classes is None and names == [str(i) for i in range(feature.num_classes)]:
            check_no_gaps(np.asarray(ds["label"]), feature.num_classes)  # a count inferred from the values
        return LabelInfo(num_classes or feature.num_classes, False, names)
    values = _require_integers(np.asarray(ds["label"]), "the label column")
    if num_classes is not None:
        return LabelInfo(num_classes, False)
    inferred = int(values.max()) + 1 if values.size else 0
    check_no_gaps(values, inferred)
    return LabelInfo(inferred, False)


def check_no_gaps(values: np.ndarray, num_classes: int) -> None:
    """Refuse a class count inferred from the largest label when some classes below it never occur.

    A stray label 9 in a 5-class set would otherwise build a 10-class head whose classes 5-8 never occur.
    """
    present = set(np.unique(values).tolist())
    missing = [label for label in range(num_classes) if label not in present]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise LabelError(
            f"labels {shown} never occur in the training split (labels found: {sorted(present)[:20]}), so "
            f"the inferred {num_classes} classes have gaps; fix the labels, or pass --num-classes "
            f"{num_classes} if those classes are real"
        )


def _require_integers(values: np.ndarray, where: str) -> np.ndarray:
    if values.size and not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.bool_)):
        raise LabelError(
            f"{where}: labels must be class indices or 0/1 targets, found {values.dtype} values such as "
            f"{values.reshape(-1)[:3].tolist()}; map them to integers (a datasets ClassLabel) first"
        )
    return values


def check_labels(ds: datasets.Dataset, info: LabelInfo, where: str) -> None:
    """Raise ``LabelError`` for an empty split or labels that do not fit ``info``."""
    if len(ds) == 0:
        raise LabelError(f"{where} is empty: no images to train or evaluate on")
    try:
        values = np.asarray(ds.with_format("numpy")["label"])
    except ValueError as error:  # ragged lists
        raise LabelError(f"{where}: multi-label targets differ in length per image ({error})") from error
    _require_integers(values, where)
    if info.multilabel:
        if values.ndim != 2 or values.shape[1] != info.num_classes:
            raise LabelError(
                f"{where}: multi-label targets have shape {values.shape}, expected (N, {info.num_classes})"
            )
        if not np.isin(values, (0, 1)).all():
            raise LabelError(
                f"{where}: multi-label targets must be 0/1, found {sorted(np.unique(values))[:10]}"
            )
        return
    bad = values[(values < 0) | (values >= info.num_classes)]
    if bad.size:
        raise LabelError(
            f"{where}: labels {sorted(set(bad.tolist()))[:10]} are outside num_classes={info.num_classes} "
            f"(valid: 0..{info.num_classes - 1})"
        )
