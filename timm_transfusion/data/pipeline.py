"""Input pipelines: which one a run's data gets, and the batches and model inputs each produces.

- ``device``: each split is decoded once into a uint8 tensor (N, 3, H, W). A batch is a slice of it with each
  image's crop box, flip and filter (``crops.CropPolicy``); accelerate moves it to the device as uint8, where
  ``ModelInputs`` resizes, crops, flips and normalises the whole batch (``resample.resized_crops``).
- ``pil``: timm's PIL transforms, one image at a time on the CPU (``transforms.TransformedDataset``); only the
  normalisation runs on the device. Needed for images of mixed sizes and for sets too large to hold decoded.

``auto`` takes the device path when every image of the run's splits has one size and their uint8 tensors fit in
``DEVICE_PATH_MAX_BYTES``. Both paths seed augmentation per (seed, epoch, image), so neither depends on the batch
size, the process count or where a run resumed.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import datasets
import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm

from .crops import CropPolicy
from .errors import PipelineError
from .resample import resized_crops
from .transforms import TransformedDataset, build_transform, grey_level_mean_std

PIPELINES = ("auto", "device", "pil")
DEVICE_PATH_MAX_BYTES = 2 * 1024**3  # decoded uint8 images of all splits, per process
_DECODE_CHUNK_BYTES = 256 * 2**20  # decoded at a time


@dataclass(frozen=True)
class PipelineChoice:
    """The pipeline a run uses and why (printed at the start of training, recorded in summary.json)."""

    name: str  # "device" or "pil"
    reason: str


def image_sizes(dataset: datasets.Dataset) -> Counter:
    """(width, height) -> count over the split, read from the image headers without decoding pixels."""
    raw = dataset.cast_column("image", datasets.Image(decode=False))
    sizes: Counter = Counter()
    for item in raw["image"]:
        source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
        with PIL.Image.open(source) as image:
            sizes[image.size] += 1
    return sizes


def _pixels(image: PIL.Image.Image) -> int:
    return image.width * image.height


def choose_pipeline(requested: str, splits: Mapping[str, datasets.Dataset]) -> PipelineChoice:
    """``requested`` (auto | device | pil) for the run's ``splits`` (name -> Dataset); refuses ``device`` on
    images of more than one size, which only the PIL path can batch."""
    if requested not in PIPELINES:
        raise PipelineError(f"unknown input pipeline {requested!r}; choose from {PIPELINES}")
    if requested == "pil":
        return PipelineChoice("pil", "--pipeline pil")
    if requested == "auto":  # a set too large at its first image's size is not worth a header scan
        estimate = sum(3 * len(ds) * _pixels(ds[0]["image"]) for ds in splits.values() if len(ds))
        if estimate > DEVICE_PATH_MAX_BYTES:
            return PipelineChoice(
                "pil", f"about {estimate / 2**30:.1f} GiB as uint8: above the device-path limit"
            )
    sizes: Counter = Counter()
    for dataset in splits.values():
        sizes.update(image_sizes(dataset))
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(3)) + (
            ", ..." if len(sizes) > 3 else ""
        )
        if requested == "device":
            raise PipelineError(
                f"--pipeline device needs images of one size; these splits hold {len(sizes)} sizes "
                f"({shown}); use --pipeline pil (or auto, which picks it)"
            )
        return PipelineChoice("pil", f"images of {len(sizes)} sizes ({shown})")
    (width, height), count = next(iter(sizes.items()), ((0, 0), 0))
    nbytes = 3 * width * height * count
    described = f"{count} images of {width}x{height} px, {nbytes / 2**20:.1f} MiB as uint8"
    if requested == "auto" and nbytes > DEVICE_PATH_MAX_BYTES:
        return PipelineChoice(
            "pil", f"{described}: above the {DEVICE_PATH_MAX_BYTES / 2**30:g} GiB device-path limit"
        )
    return PipelineChoice("device", described if requested == "auto" else f"--pipeline device; {described}")


def decode_images(dataset: datasets.Dataset, *, progress: bool = True) -> torch.Tensor:
    """Every image of a one-size split as a uint8 tensor (N, 3, H, W), decoded in chunks."""
    formatted = dataset.with_format("numpy", columns=["image"])
    first = formatted[0]["image"]
    if first.ndim != 3 or first.shape[-1] != 3 or first.dtype != np.uint8:
        raise PipelineError(
            f"the device pipeline takes 8-bit RGB images; this split decodes to {first.dtype} {first.shape} "
            "(cast the column with datasets.Image(mode='RGB'), as load_dataset_spec does)"
        )
    images = torch.empty((len(dataset), 3, *first.shape[:2]), dtype=torch.uint8)
    chunk_size = max(1, _DECODE_CHUNK_BYTES // first.nbytes)
    bar = tqdm(
        total=len(dataset), desc="decoding images", unit="img", disable=not progress or len(dataset) < 50_000
    )
    for start in range(0, len(dataset), chunk_size):
        chunk = formatted[start : start + chunk_size]["image"]
        if not isinstance(chunk, np.ndarray) or chunk.shape[1:] != first.shape:
            raise PipelineError(
                f"images {start}..{start + chunk_size - 1} do not all decode to {first.shape} (e.g. EXIF-rotated "
                "photos whose headers say otherwise); use --pipeline pil"
            )
        images[start : start + len(chunk)] = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)
        bar.update(len(chunk))
    bar.close()
    return images


def keep_batch(batch: dict) -> dict:
    """DataLoader ``collate_fn`` of the device path: ``TensorImages.__getitems__`` already returns a batch."""
    return batch


class TensorImages(torch.utils.data.Dataset):
    """A decoded split: batches of uint8 images with each image's crop box, flip and filter code.

    Items: ``{"pixel_values": uint8 (3, H, W), "crop_box": float32 (4,), "flip": bool, "filter": int64,
    "label": int64 () or (K,), "index": int64}``; ``__getitems__`` returns the same keys batched in one go.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, policy: CropPolicy, *, seed: int = 0
    ) -> None:
        self.images, self.labels, self.policy, self.seed, self.epoch = images, labels, policy, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.int64)
        boxes, flips, codes = self.policy.draw(self.seed, self.epoch, index.numpy(), *self.images.shape[2:])
        return {
            "pixel_values": self.images[index],
            "crop_box": torch.from_numpy(boxes),
            "flip": torch.from_numpy(flips),
            "filter": torch.from_numpy(codes),
            "label": self.labels[index],
            "index": index,
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([int(index)]).items()}


class ModelInputs:
    """Batch on the device -> the model's float input: (resized crop on the device path,) normalisation with the
    data config's mean and std, and channels-last memory where asked."""

    def __init__(
        self, data_config: dict, *, device_path: bool, policy: CropPolicy, channels_last: bool
    ) -> None:
        self.size = tuple(data_config["input_size"][1:])
        self.device_path, self.filters, self.channels_last = device_path, policy.filters, channels_last
        self.confine = policy.random_crop  # a random crop is cut out before it is resized, as in timm
        self.mean, self.std = grey_level_mean_std(data_config)  # moved to the batches' device once

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        images = batch["pixel_values"]
        if self.mean.device != images.device:
            self.mean, self.std = self.mean.to(images.device), self.std.to(images.device)
        images = (images.float() - self.mean) / self.std  # on the device path: the small source images
        if self.device_path:
            bounds = (-self.mean / self.std, (255 - self.mean) / self.std)  # 0 and 255 grey levels
            images = resized_crops(
                images,
                batch["crop_box"],
                self.size,
                flip=batch["flip"],
                filters=self.filters,
                codes=batch["filter"],
                bounds=bounds,
                confine=self.confine,
            )
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


@dataclass
class InputPipeline:
    """What a split needs in training: the dataset (with ``set_epoch``), its collate function and ``to_model``."""

    dataset: torch.utils.data.Dataset
    collate_fn: Callable | None
    to_model: ModelInputs

    def loader(
        self, *, batch_size: int, shuffle: bool, drop_last: bool, workers: int
    ) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=workers,
            collate_fn=self.collate_fn,
            pin_memory=torch.cuda.is_available(),
        )


def crop_policy(data_config: dict, *, training: bool, augment: bool = True) -> CropPolicy:
    """The device path's counterpart of ``transforms.build_transform`` (same scale, ratio, flip, crop mode)."""
    return CropPolicy(
        data_config["interpolation"],
        random_crop=training and augment,
        crop_mode=data_config.get("crop_mode", "center"),
    )


def build_pipeline(
    dataset: datasets.Dataset,
    data_config: dict,
    *,
    pipeline: str,
    training: bool,
    augment: bool = True,
    seed: int = 0,
    channels_last: bool = False,
    progress: bool = True,
) -> InputPipeline:
    """The ``pipeline`` ("device" or "pil", as ``choose_pipeline`` decided) for one split."""
    if pipeline not in ("device", "pil"):
        raise PipelineError(
            f"build_pipeline takes 'device' or 'pil' (choose_pipeline resolves 'auto'), got {pipeline!r}"
        )
    policy = crop_policy(data_config, training=training, augment=augment)
    device_path = pipeline == "device"
    to_model = ModelInputs(data_config, device_path=device_path, policy=policy, channels_last=channels_last)
    if not device_path:
        transform = build_transform(data_config, training=training, augment=augment)
        return InputPipeline(TransformedDataset(dataset, transform, seed=seed), None, to_model)
    labels = torch.from_numpy(
        np.asarray(dataset.with_format("numpy", columns=["label"])[:]["label"], dtype=np.int64)
    )
    images = decode_images(dataset, progress=progress)
    return InputPipeline(TensorImages(images, labels, policy, seed=seed), keep_batch, to_model)
