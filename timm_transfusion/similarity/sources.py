"""What the ``cca`` command compares: models from run folders or timm names, images from dataset specs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch import nn


def load_model(source: str, *, pretrained: bool = True, seed: int = 0) -> nn.Module:
    """A model from a run folder (``RUN/config.json``), ``local-dir:PATH``, ``hf-hub:ORG/NAME`` or timm name.

    Run folders load their saved weights with their ``num_classes``; timm names load their pretrained
    weights unless ``pretrained=False``, which gives timm's random initialization under ``seed``.
    """
    import timm_transfusion  # noqa: F401  (registers the project's models, e.g. mobilenetv1_025)

    path = Path(source.removeprefix("local-dir:"))
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path} is a folder without config.json; expected a run folder")
        num_classes = json.loads(config_file.read_text())["num_classes"]
        return timm.create_model(f"local-dir:{path}", pretrained=True, num_classes=num_classes)
    if source.startswith("local-dir:"):
        raise FileNotFoundError(f"local-dir {path} does not exist")
    torch.manual_seed(seed)
    try:
        return timm.create_model(source, pretrained=pretrained)
    except (RuntimeError, OSError, ValueError) as error:
        raise RuntimeError(
            f"could not create {source!r} (pretrained={pretrained}): {error}. Pass a run folder, "
            "local-dir:PATH, a timm name whose weights are cached, or use random weights (--no-pretrained)"
        ) from error


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
    from timm_transfusion.data import (
        TransformedDataset,
        build_transform,
        data_config_for,
        load_dataset_spec,
        normalize_on_device,
    )

    images = load_dataset_spec(dataset, split)
    if limit is not None:
        images = images.select(range(min(limit, len(images))))
    size = img_size or model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    config = data_config_for(model, size)
    loader = torch.utils.data.DataLoader(
        TransformedDataset(images, build_transform(config, training=False)),
        batch_size=batch_size,
        num_workers=workers,
    )
    return loader, lambda batch: normalize_on_device(batch, config)
