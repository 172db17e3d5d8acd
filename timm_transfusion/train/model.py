"""The one place a run creates its model, and the check that it accepts the run's image size."""

from __future__ import annotations

import torch

from ..errors import TransfusionError
from .config import TrainConfig


class ImageSizeError(TransfusionError, ValueError):
    """The model cannot run on images of the requested size."""


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


def check_image_size(model: torch.nn.Module, img_size: int) -> None:
    """Run one blank image through the model; raise ``ImageSizeError`` naming the size if it fails."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, img_size, img_size))
    except (RuntimeError, AssertionError, ValueError) as error:
        raise ImageSizeError(
            f"model {type(model).__name__} cannot take {img_size}x{img_size} images ({error}); "
            "choose another --img-size"
        ) from error
    finally:
        model.train(was_training)
