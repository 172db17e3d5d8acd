"""What the ``cca`` command compares: models from run folders or timm names, images from dataset specs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch import nn

from ..run_folder import CONFIG, read_json
from ..source_kind import local_path, source_kind
from .errors import MissingModelError, ModelSourceError


def load_model(source: str, *, pretrained: bool = True, seed: int = 0) -> nn.Module:
    """A model from a run folder (``RUN/config.json``), ``local-dir:PATH``, ``hf-hub:ORG/NAME`` or timm name.

    Run folders load their saved weights (with their ``num_classes`` when config.json has it) and timm names
    their pretrained weights; ``pretrained=False`` gives timm's random initialization of the same
    architecture under ``seed`` instead, for folders too.
    """
    import timm_transfusion  # noqa: F401  (registers the project's models, e.g. mobilenetv1_025)

    kind = source_kind(source)
    if kind in ("local-dir", "folder"):
        path = local_path(source)
        if not path.is_dir():
            raise MissingModelError(f"local-dir {path} does not exist")
        return _load_folder(path, pretrained=pretrained, seed=seed)
    if kind == "timm" and not timm.is_model(source):
        raise ModelSourceError(
            f"{source!r} is neither a run folder, local-dir:PATH, hf-hub:ORG/NAME nor a timm model"
        )
    torch.manual_seed(seed)
    try:
        return timm.create_model(source, pretrained=pretrained)
    except torch.OutOfMemoryError:
        raise
    except (OSError, RuntimeError) as error:  # download / cache errors; timm's "no pretrained weights exist"
        raise ModelSourceError(
            f"could not load the weights of {source!r} ({type(error).__name__}: {error}). Pass a run folder, "
            "local-dir:PATH, a timm name whose weights are cached, or use random weights (--no-pretrained)"
        ) from error


def _load_folder(path: Path, *, pretrained: bool, seed: int) -> nn.Module:
    """The model a run folder describes: its weights, or a seeded random init of its architecture."""
    config_file = path / CONFIG
    if not config_file.is_file():
        raise MissingModelError(f"{path} is a folder without config.json; expected a run folder")
    config = read_json(config_file)
    if not timm.is_model(config.get("architecture", "")):
        raise ModelSourceError(f"{config_file} names no timm architecture ({config.get('architecture')!r})")
    options = {"num_classes": config["num_classes"]} if "num_classes" in config else {}
    torch.manual_seed(seed)
    return timm.create_model(f"local-dir:{path}", pretrained=pretrained, **options)


def default_img_size(model: nn.Module) -> int:
    """The model's own input size (``pretrained_cfg['input_size']``), 224 when it has none."""
    return (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))[-1]


def normalization(model: nn.Module, img_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (B, 3, H, W) -> float normalised with ``model``'s own mean/std, on the images' device."""
    from timm_transfusion.data import data_config_for, normalize_on_device

    config = data_config_for(model, img_size)
    return lambda batch: normalize_on_device(batch, config)


def image_batches(
    dataset: str,
    model: nn.Module,
    *,
    split: str = "test",
    img_size: int | None = None,
    batch_size: int = 64,
    limit: int | None = None,
    workers: int = 0,
) -> tuple[torch.utils.data.DataLoader, Callable[[torch.Tensor], torch.Tensor]]:
    """A DataLoader of uint8 image batches from a dataset spec, and the on-device normalisation for them.

    Images go through ``model``'s eval transform at ``img_size`` (default: the model's input size).
    """
    from timm_transfusion.data import TransformedDataset, build_transform, data_config_for, load_dataset_spec

    images = load_dataset_spec(dataset, split)
    if limit is not None:
        images = images.select(range(min(limit, len(images))))
    size = img_size or default_img_size(model)
    loader = torch.utils.data.DataLoader(
        TransformedDataset(images, build_transform(data_config_for(model, size), training=False)),
        batch_size=batch_size,
        num_workers=workers,
    )
    return loader, normalization(model, size)
