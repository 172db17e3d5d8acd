"""Initializers on ten architectures: Mean Var statistics, transfusion-k exactness, seeding."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from timm.models._factory import create_model as stock_create_model

from timm_transfusion.init import block_groups
from timm_transfusion.init.sampling import norm_keys

ARCHITECTURES = [
    "resnet50",
    "inception_v3",
    "vit_small_patch16_224",
    "convnext_tiny",
    "efficientnet_b0",
    "mobilenetv1_025",
    "cbr_tiny",
    "cbr_small",
    "cbr_large_tall",
    "cbr_large_wide",
]


def distinct_source(name: str) -> dict[str, torch.Tensor]:
    """A saved-model stand-in with per-tensor means and scales unlike any fresh init (BN not identity)."""
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        model = stock_create_model(name)
    generator = torch.Generator().manual_seed(99)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            scale, shift = 1 + torch.rand(1, generator=generator), 0.1 * torch.randn(1, generator=generator)
            value = value * scale + shift.abs()
        state[key] = value.contiguous()
    return state


@pytest.fixture(scope="module", params=ARCHITECTURES)
def case(request, tmp_path_factory):
    """(architecture, path of its source weights, source state) — the real ImageNet file for mobilenetv1_025."""
    name = request.param
    if name == "mobilenetv1_025":
        from conftest import shared_file

        path = shared_file("mobilenetv1_025_imagenet.safetensors")
        return name, str(path), load_file(path)
    state = distinct_source(name)
    path = tmp_path_factory.mktemp(name) / "source.safetensors"
    save_file(state, str(path))
    return name, str(path), state


def build(name: str, init: str, source: str | None, seed: int) -> dict[str, torch.Tensor]:
    return timm.create_model(name, init=init, init_source=source, init_seed=seed).state_dict()


def independent_norm_keys(model: torch.nn.Module) -> set[str]:
    """Keys of torch's normalization layers (timm's LayerNorm2d / BatchNormAct2d subclass them)."""
    norm_types = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)
    return {
        f"{name}.{key}"
        for name, module in model.named_modules()
        if isinstance(module, norm_types)
        for key, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
    }


def test_meanvar_matches_source_statistics_with_identity_norms(case):
    name, path, source = case
    model = timm.create_model(name, init="meanvar", init_source=path, init_seed=0)
    state, norms = model.state_dict(), independent_norm_keys(model)
    assert norms and norms <= norm_keys(model)
    params = dict(model.named_parameters())
    checked = 0
    for key, value in state.items():
        if key in norms:
            leaf = key.rsplit(".", 1)[-1]
            expected = {"weight": 1.0, "running_var": 1.0, "bias": 0.0, "running_mean": 0.0}.get(leaf)
            if expected is not None:
                assert torch.all(value == expected), f"{key} is not identity"
            continue
        if key not in params or value.numel() < 64:
            continue
        src = source[key].double()
        n = value.numel()
        if src.std() == 0:  # a constant tensor has zero variance: Mean Var reproduces the constant
            assert torch.allclose(value.double(), src)
            continue
        assert not torch.equal(value, source[key]), f"{key} was copied, not sampled"
        mean_tol = 6 * src.std(correction=0).item() / math.sqrt(n) + 1e-7
        assert abs(value.double().mean().item() - src.mean().item()) <= mean_tol, key
        assert value.double().std(correction=0).item() == pytest.approx(
            src.std(correction=0).item(), rel=6 / math.sqrt(2 * n) + 1e-6
        ), key
        checked += 1
    assert checked >= 4


def test_transfusion_k_copies_lower_groups_and_is_random_above(case):
    name, path, source = case
    model = timm.create_model(name, init="transfusion-1", init_source=path, init_seed=0)
    random = build(name, "random", None, seed=0)
    groups = block_groups(model)
    lower = groups.keys_up_to(1)
    assert lower and len(lower) < len(random)
    for key, value in model.state_dict().items():
        reference = source[key] if key in lower else random[key]
        assert torch.equal(value, reference), f"{key} (group {groups.group_of[key]})"
    assert not all(torch.equal(random[key], source[key]) for key in lower if random[key].is_floating_point())


def test_same_seed_is_identical_and_another_seed_differs(case):
    name, path, _ = case
    for init in ("meanvar", "transfusion-0"):
        first, again, other = (build(name, init, path, seed) for seed in (7, 7, 8))
        assert all(torch.equal(first[k], again[k]) for k in first)
        assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())
