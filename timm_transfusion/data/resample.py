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


def _filter(name: str, x: torch.Tensor) -> torch.Tensor:
    """PIL's filter kernels (zero outside their support)."""
    a = x.abs()
    if name == "box":
        return ((x > -0.5) & (x <= 0.5)).to(x.dtype)  # PIL's side of a tie
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
    start: torch.Tensor,
    length: torch.Tensor,
    size_in: int,
    size_out: int,
    name: str,
    *,
    confine: bool = False,
) -> torch.Tensor:
    """(B, size_out, size_in) taps mapping the span ``[start, start + length)`` of each input onto ``size_out``
    px; a negative ``length`` runs the span backwards (a mirrored crop, at no extra cost). ``confine``: no
    taps outside the span, as when the crop is cut out before it is resized (timm's random-resized crop);
    otherwise the filter reaches past the span's edges, as PIL's ``resize(box=...)`` does."""
    scale = (length / size_out)[:, None, None]
    steps = torch.arange(size_out, device=start.device, dtype=torch.float64)[None, :, None] + 0.5
    if name == "nearest":  # PIL: the input pixel under the output pixel's centre, found in double precision
        centre = start.double()[:, None, None] + steps * scale.double()
        nearest = centre.floor().clamp(0, size_in - 1)
        position = torch.arange(size_in, device=start.device, dtype=torch.float64)[None, None, :]
        taps = (position == nearest).to(start.dtype)
    else:
        centre = start[:, None, None] + steps.to(start.dtype) * scale
        inverse_widen = 1 / scale.abs().clamp(min=1.0)  # downscaling widens the filter: PIL's antialiasing
        pixel_centres = torch.arange(size_in, device=start.device, dtype=start.dtype)[None, None, :] + 0.5
        taps = _filter(name, (pixel_centres - centre) * inverse_widen)
    if confine:
        low, high = torch.minimum(start, start + length), torch.maximum(start, start + length)
        pixels = torch.arange(size_in, device=start.device, dtype=start.dtype)[None, None, :]
        taps = taps * ((pixels >= low.floor()[:, None, None]) & (pixels < high.ceil()[:, None, None]))
    return taps / taps.sum(-1, keepdim=True).clamp(min=torch.finfo(taps.dtype).tiny)


def _weights_for(
    start: torch.Tensor,
    length: torch.Tensor,
    size_in: int,
    size_out: int,
    filters: tuple[str, ...],
    codes: torch.Tensor,
    confine: bool,
) -> torch.Tensor:
    """Taps of each image's own filter; the candidates are fixed, so choosing needs no host sync."""
    weights = resample_weights(start, length, size_in, size_out, filters[0], confine=confine)
    for name in filters[1:]:
        chosen = (codes == FILTERS.index(name))[:, None, None]
        taps = resample_weights(start, length, size_in, size_out, name, confine=confine)
        weights = torch.where(chosen, taps, weights)
    return weights


def resized_crops(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    *,
    flip: torch.Tensor,
    filters: tuple[str, ...],
    codes: torch.Tensor,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    confine: bool = False,
) -> torch.Tensor:
    """(B, C, H, W) float images -> (B, C, *size): each image's box ``(x0, y0, w, h)`` (input px) resized to
    ``size`` with its filter (``codes`` index ``FILTERS``; the candidates are ``filters``), mirrored
    left-right where ``flip``.

    Each output pixel is a weighted mean of input pixels (the taps sum to 1), so images normalised before
    resizing equal images normalised after. ``bounds`` (low, high), broadcastable to (1, C, 1, 1), clip after
    each pass as PIL clips to 0..255; only filters with negative taps (hamming, bicubic, lanczos) can overshoot.
    ``confine``: cut each box out before resizing it (see ``resample_weights``).
    """
    batch, channels, height, width = images.shape
    out_h, out_w = size
    boxes = boxes.to(images.device, torch.float32)
    mirrored = flip.to(boxes.device)
    x_start = torch.where(mirrored, boxes[:, 0] + boxes[:, 2], boxes[:, 0])
    x_length = torch.where(mirrored, -boxes[:, 2], boxes[:, 2])
    wy = _weights_for(boxes[:, 1], boxes[:, 3], height, out_h, filters, codes, confine)
    wx = _weights_for(x_start, x_length, width, out_w, filters, codes, confine)
    overshoots = bounds is not None and not set(filters) <= {"nearest", "box", "bilinear"}

    def clip(pixels: torch.Tensor) -> torch.Tensor:
        return pixels.clamp_(*bounds) if overshoots else pixels

    # PIL's order: the horizontal pass (one bmm over every channel's rows), then the vertical
    rows = clip(
        (images.reshape(batch, channels * height, width) @ wx.transpose(1, 2)).view(
            batch, channels, height, out_w
        )
    )
    per_channel = (
        wy.unsqueeze(1).expand(batch, channels, out_h, height).reshape(batch * channels, out_h, height)
    )
    columns = per_channel @ rows.view(batch * channels, height, out_w)
    return clip(columns.view(batch, channels, out_h, out_w))
