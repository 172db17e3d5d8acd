"""Dataset specs -> ``datasets.Dataset`` with the columns ``image`` (PIL RGB) and ``label``.

Spec kinds:
- ``npz:PATH``            MedMNIST layout (``{split}_images`` / ``{split}_labels``)
- ``imagefolder:DIR``     ``DIR/[split/]class/*.png`` through the ``imagefolder`` builder
- ``hf:NAME[:CONFIG]``    ``datasets.load_dataset`` (Hub name, from the local cache when offline) or a folder
                          written by ``save_to_disk`` (``load_from_disk``)
- ``synthetic:NAME[:OPTS]`` generated in the package (see ``synthetic.py``)
"""

from __future__ import annotations

from pathlib import Path

import datasets

from .errors import DatasetSpecError
from .npz import load_npz
from .synthetic import load_synthetic

SPEC_KINDS = ("npz", "imagefolder", "hf", "synthetic")
SPLIT_ALIASES = {"val": ("validation", "valid", "dev"), "validation": ("val", "valid"), "test": ("testing",)}


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """``"kind:target[:config]"`` -> (kind, target, config); config only for hf and synthetic."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in SPEC_KINDS or not rest:
        raise DatasetSpecError(
            f"unknown dataset spec {spec!r}; use one of "
            "'npz:PATH', 'imagefolder:DIR', 'hf:NAME[:CONFIG]', 'synthetic:NAME' "
            f"(synthetic tasks: edges, fundus, fundus-multilabel)"
        )
    if kind in ("hf", "synthetic") and ":" in rest and not Path(rest).exists():
        target, _, config = rest.partition(":")
        return kind, target, config or None
    return kind, rest, None


def _resolve_split(available: list[str], split: str, where: str) -> str:
    if split in available:
        return split
    for alias in SPLIT_ALIASES.get(split, ()):
        if alias in available:
            return alias
    raise DatasetSpecError(f"{where} has no split {split!r}; available splits: {available}")


def _is_saved_dataset(path: Path) -> bool:
    return (path / datasets.config.DATASETDICT_JSON_FILENAME).is_file() or (
        path / datasets.config.DATASET_STATE_JSON_FILENAME
    ).is_file()


def _load_hf(name: str, config: str | None, split: str) -> datasets.Dataset:
    path = Path(name)
    if path.is_dir() and _is_saved_dataset(path):
        try:
            loaded = datasets.load_from_disk(str(path))
        except (IndexError, FileNotFoundError, ValueError) as error:  # e.g. a saved split with zero rows
            raise DatasetSpecError(f"could not read the saved dataset {str(path)!r}: {error!r}") from error
        if isinstance(loaded, datasets.Dataset):
            if split not in ("train",):
                raise DatasetSpecError(
                    f"{path} holds a single saved Dataset; only split 'train' is available"
                )
            return loaded
        return loaded[_resolve_split(list(loaded), split, str(path))]
    try:
        loaded = datasets.load_dataset(name, config)
    except (FileNotFoundError, ConnectionError, ValueError) as error:
        raise DatasetSpecError(
            f"could not load hf dataset {name!r} (config {config!r}): {error}. Offline, it must be in the local "
            "cache (HF_DATASETS_OFFLINE=1 uses it) or be a folder written by Dataset(Dict).save_to_disk"
        ) from error
    return loaded[_resolve_split(list(loaded), split, f"hf dataset {name!r}")]


def _load_imagefolder(directory: str, split: str) -> datasets.Dataset:
    if not Path(directory).is_dir():
        raise DatasetSpecError(f"imagefolder directory {directory!r} does not exist")
    try:
        loaded = datasets.load_dataset("imagefolder", data_dir=directory)
    except (FileNotFoundError, ValueError) as error:
        raise DatasetSpecError(f"could not read imagefolder {directory!r}: {error}") from error
    return loaded[_resolve_split(list(loaded), split, f"imagefolder {directory!r}")]


def _standard_columns(
    ds: datasets.Dataset, where: str, image_column: str | None, label_column: str | list[str] | None
) -> datasets.Dataset:
    """Rename/convert to ``image`` + ``label``; several label columns become one multi-hot ``label``."""
    features = ds.features
    image_candidates = (
        [image_column]
        if image_column
        else ["image", "img", "pixel_values"]
        + [k for k, v in features.items() if isinstance(v, datasets.Image)]
    )
    image_key = next((k for k in image_candidates if k in features), None)
    if image_key is None:
        raise DatasetSpecError(f"{where}: no image column {image_candidates}; columns: {list(features)}")
    if isinstance(label_column, str) and "," in label_column:
        label_column = label_column.split(",")
    if isinstance(label_column, list):
        missing = [c for c in label_column if c not in features]
        if missing:
            raise DatasetSpecError(f"{where}: label columns {missing} absent; columns: {list(features)}")
        names = list(label_column)
        ds = ds.map(lambda ex: {"label": [int(ex[c]) for c in names]}, remove_columns=names)
        ds = ds.cast_column("label", datasets.List(datasets.Value("int64"), length=len(names)))
        label_key = "label"
    else:
        label_candidates = (
            [label_column]
            if label_column
            else ["label", "labels", "fine_label"]
            + [k for k, v in features.items() if isinstance(v, datasets.ClassLabel)]
        )
        label_key = next((k for k in label_candidates if k in features), None)
        if label_key is None:
            raise DatasetSpecError(f"{where}: no label column {label_candidates}; columns: {list(features)}")
    ds = ds.select_columns([image_key, label_key])
    if image_key != "image":
        ds = ds.rename_column(image_key, "image")
    if label_key != "label":
        ds = ds.rename_column(label_key, "label")
    return ds.cast_column("image", datasets.Image(mode="RGB"))


def load_dataset_spec(
    spec: str,
    split: str,
    *,
    image_column: str | None = None,
    label_column: str | list[str] | None = None,
) -> datasets.Dataset:
    """Load ``split`` of the dataset named by ``spec`` with columns ``image`` (PIL RGB) and ``label``.

    ``label`` is an int (single-label) or a multi-hot list of int (multi-label). Raises ``DatasetSpecError``
    for an unknown spec kind, a missing file or folder, or an absent split / column.
    """
    kind, target, config = parse_spec(spec)
    if kind == "npz":
        ds = load_npz(target, split)
    elif kind == "synthetic":
        ds = load_synthetic(target, split, config)
    elif kind == "imagefolder":
        ds = _load_imagefolder(target, split)
    else:
        ds = _load_hf(target, config, split)
    return _standard_columns(ds, f"{spec} [{split}]", image_column, label_column)
