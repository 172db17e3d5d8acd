"""Whether a model accepts an image size: asked once before training or comparing, with a clear error."""

from __future__ import annotations

import warnings

import torch

from ..errors import TransfusionError


class ImageSizeError(TransfusionError, ValueError):
    """The model cannot run on images of the requested size."""


class SmallImageWarning(UserWarning):
    """The images are smaller than the model's total stride: its last stages see 1x1 maps."""


def total_stride(model: torch.nn.Module) -> int | None:
    """The largest feature reduction timm records for ``model`` (``feature_info``), if any."""
    info = getattr(model, "feature_info", None)
    reductions = [entry.get("reduction") for entry in info if isinstance(entry, dict)] if info else []
    reductions = [r for r in reductions if r]
    return max(reductions) if reductions else None


def check_stride(model: torch.nn.Module, img_size: int) -> None:
    """Refuse images at most a quarter of the total stride (the last two or more stages would see one padded
    pixel: training "works" on nothing); warn below the total stride."""
    stride = total_stride(model)
    if stride is None or img_size >= stride:
        return
    name = getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
    if img_size * 4 <= stride:
        raise ImageSizeError(
            f"{img_size}x{img_size} images are far too small for {name}, which downsamples {stride}x: its last "
            f"stages would see 1x1 maps of padding; use --img-size {stride} or more (images are upsampled)"
        )
    warnings.warn(
        f"{img_size}x{img_size} images are smaller than {name}'s total stride {stride}: its last stages see 1x1 "
        f"maps; --img-size {stride} or more gives them spatial context",
        SmallImageWarning,
        stacklevel=3,  # the caller of check_image_size
    )


def check_image_size(model: torch.nn.Module, img_size: int) -> None:
    """Run one blank image through the model; raise ``ImageSizeError`` naming the size if it fails or the images
    are far smaller than the model's total stride."""
    check_stride(model, img_size)
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
