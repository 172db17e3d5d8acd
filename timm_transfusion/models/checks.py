"""Whether a model accepts an image size: asked once before training or comparing, with a clear error."""

from __future__ import annotations

import torch

from ..errors import TransfusionError


class ImageSizeError(TransfusionError, ValueError):
    """The model cannot run on images of the requested size."""


def check_image_size(model: torch.nn.Module, img_size: int) -> None:
    """Run one blank image through the model; raise ``ImageSizeError`` naming the size if it fails."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, img_size, img_size))
    except (RuntimeError, AssertionError, ValueError) as error:  # timm's size checks: assert or raise
        raise ImageSizeError(
            f"model {type(model).__name__} cannot take {img_size}x{img_size} images ({error}); "
            "choose another --img-size"
        ) from error
    finally:
        model.train(was_training)
