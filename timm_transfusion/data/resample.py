"""Batched resized crops on the device: one box per image, PIL's resampling filters, two matrix products.

Resizing an image is separable: ``out = Wy @ image @ Wx.T``, where row ``o`` of ``Wy`` holds the filter taps of
output row ``o``. Building ``Wy`` and ``Wx`` per image (its own crop box, its own flip) turns a batch of
random-resized crops into one batched matmul, which is what a GPU is fastest at and what no torchvision op does
for per-image boxes. The taps follow PIL's ``Image.resize(box=...)``: the filter is centred on each output pixel
mapped into the box, widened by the scale when downscaling (antialiasing) and cut at the image border, then
normalised. So device-path images match timm's PIL transforms to within rounding (see the tests and README).
"""

from __future__ import annotations

import math

import torch

from .errors import PipelineError

# Index = the code carried in a batch's ``filter`` column; names as in timm's data configs.
FILTERS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
SUPPORT = {"box": 0.5, "bilinear": 1.0, "hamming": 1.0, "bicubic": 2.0, "lanczos": 3.0}


def _filter(name: str, x: torch.Tensor) -> torch.Tensor:
    """PIL's filter kernels (zero outside their support)."""
    a = x.abs()
    if name == "box":
        return ((x >= -0.5) & (x < 0.5)).to(x.dtype)
    if name == "bilinear":
        return (1 - a).clamp(min=0)
    if name == "hamming":
        return torch.where(a < 1, torch.sinc(x) * (0.54 + 0.46 * torch.cos(math.pi * x)), 0.0)
    if name == "bicubic":  # Keys' cubic with a = -0.5, as PIL
        near = (1.5 * a - 2.5) * a * a + 1
        far = ((-0.5 * a + 2.5) * a - 4) * a + 2
        return torch.where(a < 1, near, torch.where(a < 2, far, 0.0))
    if name == "lanczos":
        return torch.where(a < 3, torch.sinc(x) * torch.sinc(x / 3), 0.0)
    raise PipelineError(f"unknown resampling filter {name!r}; choose from {FILTERS}")


def resample_weights(
    start: torch.Tensor, length: torch.Tensor, size_in: int, size_out: int, name: str
) -> torch.Tensor:
    """(B, size_out, size_in) taps mapping the span ``[start, start + length)`` of each input onto ``size_out`` px."""
    scale = (length / size_out)[:, None, None]
    centre = start[:, None, None] + (torch.arange(size_out, device=start.device)[None, :, None] + 0.5) * scale
    position = torch.arange(size_in, device=start.device, dtype=start.dtype)[None, None, :]
    if name == "nearest":  # PIL: the input pixel under the output pixel's centre
        nearest = centre.floor().clamp(0, size_in - 1)
        return (position == nearest).to(start.dtype)
    widen = scale.clamp(min=1.0)
    taps = _filter(name, (position + 0.5 - centre) / widen)
    return taps / taps.sum(-1, keepdim=True).clamp(min=torch.finfo(taps.dtype).tiny)


def _weights_for(
    start: torch.Tensor,
    length: torch.Tensor,
    size_in: int,
    size_out: int,
    filters: tuple[str, ...],
    codes: torch.Tensor,
) -> torch.Tensor:
    """Taps of each image's own filter; the candidates are fixed, so choosing needs no host sync."""
    weights = resample_weights(start, length, size_in, size_out, filters[0])
    for name in filters[1:]:
        chosen = (codes == FILTERS.index(name))[:, None, None]
        weights = torch.where(chosen, resample_weights(start, length, size_in, size_out, name), weights)
    return weights


def resized_crops(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    *,
    flip: torch.Tensor,
    filters: tuple[str, ...],
    codes: torch.Tensor,
) -> torch.Tensor:
    """(B, C, H, W) images -> (B, C, *size) float32 in the input's value range: each image's box
    ``(x0, y0, w, h)`` (input px) resized to ``size`` with its filter (``codes`` index ``FILTERS``; the
    candidates are ``filters``), mirrored left-right where ``flip``.
    """
    _, _, height, width = images.shape
    out_h, out_w = size
    boxes = boxes.to(images.device, torch.float32)
    wy = _weights_for(boxes[:, 1], boxes[:, 3], height, out_h, filters, codes)
    wx = _weights_for(boxes[:, 0], boxes[:, 2], width, out_w, filters, codes)
    wx = torch.where(flip[:, None, None], wx.flip(1), wx)
    # PIL's order: the horizontal pass, then the vertical; uint8 images are clipped to 0..255 after each pass (cubic
    # and Lanczos taps overshoot)
    clip = (lambda x: x.clamp_(0, 255)) if images.dtype == torch.uint8 else (lambda x: x)
    return clip(wy[:, None] @ clip(images.float() @ wx.transpose(1, 2)[:, None]))
