"""Shared fixtures: the real data in ../shared/data, read in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("TRANSFUSION_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data; skips the test when it is absent, fails under CI's strict mode."""
    path = SHARED_DATA / name
    if not path.is_file():
        reason = f"{path} is absent (real data from ../shared/data; see its SOURCES.md)"
        if os.environ.get("TRANSFUSION_REQUIRE_SHARED") == "1":
            pytest.fail(f"TRANSFUSION_REQUIRE_SHARED=1 but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture
def mobilenet_weights() -> Path:
    return shared_file("mobilenetv1_025_imagenet.safetensors")


@pytest.fixture
def retinamnist() -> Path:
    return shared_file("retinamnist.npz")


@pytest.fixture
def pneumoniamnist() -> Path:
    return shared_file("pneumoniamnist.npz")


@pytest.fixture
def cifar10_subset() -> Path:
    return shared_file("cifar10_subset.npz")


@pytest.fixture
def one_torch_thread():
    """Small models and float64 matrices: on a few shared cores OpenMP spin-waiting makes 2 threads far
    slower than 1 (subprocesses get OMP_NUM_THREADS=1 for the same reason); restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
