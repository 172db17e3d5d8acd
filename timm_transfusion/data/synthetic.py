"""Deterministic synthetic image tasks generated in the package (no downloads).

- ``edges``: natural-image-like. Oriented gratings and step edges over coloured, noisy textures; the label is the
  orientation (6 classes, 0°-150°), so a network trained on it learns oriented edge filters in its first layer.
- ``fundus``: medical-like. A fundus-like disc (vignetted orange-red, bright optic disc, dark vessels) with
  lesions whose number and kind set a 5-level grade (0 = none ... 4 = many haemorrhages + exudates + new vessels).
- ``fundus-multilabel``: the same discs with three independent binary findings (haemorrhages, exudates,
  cotton-wool spots): a CheXpert-style multi-label task.

Every image is a function of (task, seed, split, index), so runs and processes see identical data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import datasets
import numpy as np

from .errors import DatasetSpecError
from .features import image_label_features

SPLITS = ("train", "val", "test")
FUNDUS_GRADES = ["no DR", "mild", "moderate", "severe", "proliferative"]
FUNDUS_FINDINGS = ["haemorrhages", "exudates", "cotton_wool_spots"]


@dataclass(frozen=True)
class SyntheticTask:
    """A generator ``(rng, size) -> (image (size, size, 3) uint8, label)`` and its label schema."""

    generate: Callable[[np.random.Generator, int], tuple[np.ndarray, object]]
    label_names: tuple[str, ...]
    multilabel: bool
    sizes: dict[str, int]
    description: str


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in [-1, 1], each (size, size)."""
    axis = (np.arange(size) + 0.5) / size * 2 - 1
    return np.meshgrid(axis, axis, indexing="xy")


def _blobs(size: int, centres: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Sum of isotropic Gaussians (size, size); centres (K, 2) in [-1, 1], sigmas (K,) in [-1, 1] units."""
    x, y = _grid(size)
    if len(centres) == 0:
        return np.zeros((size, size))
    d2 = (x[None] - centres[:, 0, None, None]) ** 2 + (y[None] - centres[:, 1, None, None]) ** 2
    return np.exp(-d2 / (2 * sigmas[:, None, None] ** 2)).sum(0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _edges(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    label = int(rng.integers(6))
    theta = np.deg2rad(label * 30 + rng.uniform(-6, 6))
    x, y = _grid(size)
    u = x * np.cos(theta) + y * np.sin(theta)
    if rng.random() < 0.6:
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * u / rng.uniform(0.25, 0.7) + rng.uniform(0, 2 * np.pi))
    else:
        pattern = 1 / (1 + np.exp(-(u - rng.uniform(-0.5, 0.5)) / 0.04))
    colour_a, colour_b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    image = pattern[..., None] * colour_a + (1 - pattern[..., None]) * colour_b
    texture = _blobs(size, rng.uniform(-1, 1, (6, 2)), rng.uniform(0.05, 0.3, 6))
    image = image * (0.75 + 0.25 * np.tanh(texture))[..., None] + rng.normal(0, 0.06, image.shape)
    return _to_uint8(image), label


def _fundus_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A vignetted disc with optic disc and vessels; returns image (size, size, 3), disc mask, optic centre."""
    x, y = _grid(size)
    cx, cy = rng.uniform(-0.06, 0.06, 2)
    radius = rng.uniform(0.82, 0.95)
    r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / radius
    mask = r < 1
    base = np.array([0.75, 0.32, 0.12]) * rng.uniform(0.8, 1.15) + rng.normal(0, 0.03, 3)
    image = base * (1 - 0.45 * r[..., None] ** 2)
    side = rng.choice([-1, 1])
    optic = np.array([cx + side * rng.uniform(0.3, 0.45), cy + rng.uniform(-0.1, 0.1)])
    image += _blobs(size, optic[None], np.array([0.09]))[..., None] * np.array([0.3, 0.35, 0.25])
    for _ in range(4):
        angle = rng.uniform(0, 2 * np.pi)
        bend = rng.uniform(-1.5, 1.5)
        dx, dy = x - optic[0], y - optic[1]
        along = dx * np.cos(angle) + dy * np.sin(angle)
        across = -dx * np.sin(angle) + dy * np.cos(angle) - bend * along**2 * 0.3
        vessel = np.exp(-(across**2) / (2 * 0.018**2)) * (along > 0)
        image -= vessel[..., None] * np.array([0.25, 0.15, 0.05])
    image += rng.normal(0, 0.025, image.shape)
    return image, mask, optic


def _spots(rng: np.random.Generator, count: int, mask_radius: float = 0.75) -> np.ndarray:
    """(count, 2) positions inside the disc."""
    angle, rad = rng.uniform(0, 2 * np.pi, count), mask_radius * np.sqrt(rng.uniform(0, 1, count))
    return np.stack([rad * np.cos(angle), rad * np.sin(angle)], 1)


def _add_lesions(
    image: np.ndarray, rng: np.random.Generator, size: int, *, red: int, yellow: int, pale: int, vessels: bool
) -> np.ndarray:
    scale = 2.0 / size  # one pixel in [-1, 1] units
    if red:
        image -= _blobs(size, _spots(rng, red), rng.uniform(0.6, 1.3, red) * scale)[..., None] * [
            0.35,
            0.2,
            0.05,
        ]
    if yellow:
        image += _blobs(size, _spots(rng, yellow), rng.uniform(0.6, 1.1, yellow) * scale)[..., None] * [
            0.25,
            0.45,
            0.05,
        ]
    if pale:
        image += _blobs(size, _spots(rng, pale), rng.uniform(1.5, 2.5, pale) * scale)[..., None] * [
            0.2,
            0.3,
            0.3,
        ]
    if vessels:
        x, y = _grid(size)
        centre = _spots(rng, 1, 0.4)[0]
        wiggle = np.sin((x - centre[0]) * rng.uniform(25, 40)) * 0.06
        tangle = np.exp(-((y - centre[1] - wiggle) ** 2) / (2 * (0.6 * scale) ** 2)) * (
            np.abs(x - centre[0]) < 0.3
        )
        image -= tangle[..., None] * np.array([0.2, 0.25, 0.1])
    return image


def _finish(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return _to_uint8(image * mask[..., None])


def _fundus(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    grade = int(rng.choice(5, p=[0.4, 0.15, 0.2, 0.15, 0.1]))
    red = [0, rng.integers(1, 3), rng.integers(3, 7), rng.integers(7, 12), rng.integers(10, 16)][grade]
    yellow = [0, 0, rng.integers(0, 2), rng.integers(1, 4), rng.integers(2, 6)][grade]
    image, mask, _ = _fundus_background(rng, size)
    image = _add_lesions(image, rng, size, red=int(red), yellow=int(yellow), pale=0, vessels=grade == 4)
    return _finish(image, mask), grade


def _fundus_multilabel(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[int]]:
    findings = (rng.random(3) < 0.4).astype(int)
    counts = [int(rng.integers(2, 8)) * f for f in findings]
    image, mask, _ = _fundus_background(rng, size)
    image = _add_lesions(image, rng, size, red=counts[0], yellow=counts[1], pale=counts[2], vessels=False)
    return _finish(image, mask), findings.tolist()


TASKS: dict[str, SyntheticTask] = {
    "edges": SyntheticTask(
        _edges,
        tuple(f"{a}deg" for a in range(0, 180, 30)),
        False,
        {"train": 3000, "val": 500, "test": 500},
        "natural-image-like: oriented gratings/edges on textures, 6 orientation classes",
    ),
    "fundus": SyntheticTask(
        _fundus,
        tuple(FUNDUS_GRADES),
        False,
        {"train": 1500, "val": 300, "test": 500},
        "medical-like: fundus-like discs whose lesions set a 5-level grade",
    ),
    "fundus-multilabel": SyntheticTask(
        _fundus_multilabel,
        tuple(FUNDUS_FINDINGS),
        True,
        {"train": 1500, "val": 300, "test": 500},
        "medical-like multi-label: haemorrhages / exudates / cotton-wool spots on fundus-like discs",
    ),
}


def _parse_options(options: str | None) -> dict[str, int]:
    """``"train=600,size=32,seed=1"`` -> dict; keys: train, val, test, size, seed."""
    valid = {"train", "val", "test", "size", "seed"}
    parsed: dict[str, int] = {}
    for item in filter(None, (options or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in valid or not value.strip().lstrip("-").isdigit():
            raise DatasetSpecError(f"bad synthetic option {item!r}; use KEY=INT with KEY in {sorted(valid)}")
        parsed[key] = int(value)
    return parsed


@lru_cache(maxsize=16)
def load_synthetic(name: str, split: str, options: str | None = None) -> datasets.Dataset:
    """Generate split ``split`` of task ``name``; options ``"train=N,val=N,test=N,size=PX,seed=S"``."""
    if name not in TASKS:
        raise DatasetSpecError(f"unknown synthetic task {name!r}; choose one of {sorted(TASKS)}")
    if split not in SPLITS:
        raise DatasetSpecError(f"synthetic task {name!r} has no split {split!r}; splits: {list(SPLITS)}")
    task, opts = TASKS[name], _parse_options(options)
    count, size, seed = opts.get(split, task.sizes[split]), opts.get("size", 32), opts.get("seed", 0)
    if size < 8:
        raise DatasetSpecError(f"synthetic image size {size} is too small; use size >= 8")
    rng = np.random.default_rng([seed, SPLITS.index(split), sum(map(ord, name))])
    images, labels = [], []
    for _ in range(count):
        image, label = task.generate(rng, size)
        images.append(image)
        labels.append(label)
    names = None if task.multilabel else list(task.label_names)
    features = image_label_features(len(task.label_names), multilabel=task.multilabel, names=names)
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
