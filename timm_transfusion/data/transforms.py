"""timm transforms for a model and image size, producing uint8 tensors that are normalized on the device."""

from __future__ import annotations

import random
from collections.abc import Callable

import datasets
import torch
from timm.data import create_transform, resolve_data_config

from .crops import TRAIN_HFLIP, TRAIN_RATIO, TRAIN_SCALE


def data_config_for(model: torch.nn.Module, img_size: int) -> dict:
    """timm's data config for ``model`` at ``img_size`` px (no crop: small medical images keep their borders)."""
    return resolve_data_config(args={"input_size": (3, img_size, img_size), "crop_pct": 1.0}, model=model)


def build_transform(data_config: dict, *, training: bool, augment: bool = True) -> Callable:
    """PIL image -> uint8 tensor (3, H, W); training adds random-resized-crop (scale 0.8-1) and h-flip."""
    return create_transform(
        **data_config,
        is_training=training,
        no_aug=not augment,
        scale=TRAIN_SCALE,
        ratio=TRAIN_RATIO,
        hflip=TRAIN_HFLIP,
        color_jitter=0.0,
        use_prefetcher=True,
    )


def grey_level_mean_std(
    data_config: dict, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The config's mean and std in grey levels (0..255), shaped (1, C, 1, 1) for uint8 batches."""
    mean = torch.tensor(data_config["mean"], device=device).view(1, -1, 1, 1) * 255
    return mean, torch.tensor(data_config["std"], device=device).view(1, -1, 1, 1) * 255


def normalize_on_device(images: torch.Tensor, data_config: dict) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float normalized with the config's mean/std, on the images' device."""
    mean, std = grey_level_mean_std(data_config, images.device)
    return (images.float() - mean) / std


class TransformedDataset(torch.utils.data.Dataset):
    """A ``datasets.Dataset`` seen through a timm transform, with augmentation seeded per (seed, epoch, index).

    Seeding each sample makes a resumed run (which skips batches without loading them) augment exactly as an
    uninterrupted one. Items: ``{"pixel_values": uint8 (3, H, W), "label": int64 () or (K,), "index": int64}``.
    """

    def __init__(self, dataset: datasets.Dataset, transform: Callable, *, seed: int = 0) -> None:
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        example = self.dataset[int(index)]
        sample_seed = hash((self.seed, self.epoch, int(index))) & 0x7FFF_FFFF
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed)  # CPU only: torch.manual_seed also pokes CUDA
            python_state = random.getstate()
            random.seed(sample_seed)
            try:
                pixels = self.transform(example["image"])
            finally:
                random.setstate(python_state)
        return {
            "pixel_values": pixels,
            "label": torch.as_tensor(example["label"], dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }
