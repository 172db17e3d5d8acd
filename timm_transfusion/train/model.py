"""The one place a run creates its model (the image-size check lives in :mod:`timm_transfusion.models.checks`)."""

from __future__ import annotations

import torch

from ..models.checks import ImageSizeError, check_image_size
from .config import TrainConfig

__all__ = ["ImageSizeError", "check_image_size", "create_model"]


def create_model(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    """Build ``config.model`` with ``config.init`` from ``config.init_source`` (seeded, identical on every process)."""
    from timm_transfusion import create_model as create_initialized

    return create_initialized(
        config.model,
        init=config.init,
        init_source=config.init_source,
        init_seed=config.init_seed if config.init_seed is not None else config.seed,
        num_classes=num_classes,
    )
