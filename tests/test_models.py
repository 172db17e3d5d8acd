"""The registered architectures: CBR family layout, timm's model API, and the real MobileNet weights."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config

import timm_transfusion  # noqa: F401

CBR_LAYOUTS = {
    "cbr_tiny": (5, (64, 128, 256, 512)),
    "cbr_small": (7, (32, 64, 128, 256)),
    "cbr_large_tall": (7, (32, 64, 128, 256, 512)),
    "cbr_large_wide": (7, (64, 128, 256, 512)),
}


@pytest.mark.parametrize("name", CBR_LAYOUTS)
def test_cbr_parameter_count_follows_the_documented_layers(name):
    kernel, widths = CBR_LAYOUTS[name]
    channels = (3, *widths)
    expected = sum(kernel * kernel * c_in * c_out + 2 * c_out for c_in, c_out in itertools.pairwise(channels))
    expected += widths[-1] * 5 + 5
    model = timm.create_model(name, num_classes=5)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert [m.kernel_size for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == [
        (kernel, kernel)
    ] * len(widths)


@pytest.mark.parametrize("name", CBR_LAYOUTS)
def test_cbr_follows_timms_model_api(name):
    _, widths = CBR_LAYOUTS[name]
    model = timm.create_model(name, num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    final, intermediates = model.forward_intermediates(x)
    assert torch.equal(final, model.forward_features(x))
    assert [t.shape[1] for t in intermediates] == list(widths)
    assert [t.shape[-1] for t in intermediates] == [64 // 2 ** (i + 1) for i in range(len(widths))]
    assert model(x).shape == (2, 4)
    assert model.forward_head(final, pre_logits=True).shape == (2, widths[-1])
    model.reset_classifier(7)
    assert model(x).shape == (2, 7) and model.get_classifier().out_features == 7
    features = timm.create_model(name, features_only=True, out_indices=(0, len(widths) - 1))
    assert [t.shape[1] for t in features(x)] == [widths[0], widths[-1]]
    groups = timm_transfusion.init.block_groups(model)
    assert groups.num_blocks == len(widths) - 1 and groups.group_of["stem.conv.weight"] == 0


VEHICLE = re.compile(
    r"\b(truck|car|van|jeep|limousine|cab|minivan|pickup|trailer|fire engine|ambulance|bus|wagon|racer|"
    r"convertible|tractor|forklift|moped|scooter|snowplow|tow|garbage|trolleybus|streetcar|airliner|warplane|"
    r"airship|ship|boat|liner|schooner|catamaran|speedboat|yawl|fireboat|lifeboat|canoe|container)\b"
)


def _top5(model, images, transform) -> torch.Tensor:
    batch = torch.stack([transform(Image.fromarray(image)) for image in images])
    with torch.no_grad():
        return model(batch).topk(5).indices


def test_real_imagenet_mobilenet_sees_vehicles_in_cifar10(mobilenet_weights, cifar10_subset):
    """Proof the ImageNet weights land in the right layers: vehicles → vehicle classes, animals → animals."""
    model = timm.create_model("mobilenetv1_025", init="pretrained", init_source=mobilenet_weights).eval()
    info = ImageNetInfo()
    vehicle_classes = {i for i in range(1000) if VEHICLE.search(info.index_to_description(i))}
    data = np.load(cifar10_subset)
    images, labels = data["test_images"], data["test_labels"][:, 0]
    transform = create_transform(**resolve_data_config({}, model=model))

    def rate(classes: tuple[int, ...], hit) -> float:
        picks = np.concatenate([np.flatnonzero(labels == c)[:30] for c in classes])
        return float(np.mean([hit(set(row.tolist())) for row in _top5(model, images[picks], transform)]))

    vehicles = rate(
        (0, 1, 8, 9), lambda top: bool(top & vehicle_classes)
    )  # airplane, automobile, ship, truck
    animals = rate((3, 5, 6, 7), lambda top: bool(top & vehicle_classes))  # cat, dog, frog, horse
    animal_top = rate((3, 5, 6, 7), lambda top: min(top) < 398)  # ImageNet classes 0..397 are animals
    assert vehicles >= 0.4 and animals <= 0.15 and animal_top >= 0.8, (vehicles, animals, animal_top)
