"""The streaming accumulator: batches, merges and all-reduce give the one-shot answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_similarity_reference import correlated

from timm_transfusion.similarity import ActivationShapeError, MomentAccumulator
from timm_transfusion.similarity.moments import centred_products

METRICS = {
    "mean_cca": lambda m: m.mean_cca(),
    "pwcca": lambda m: m.pwcca(),
    "pwcca_google": lambda m: m.pwcca(convention="google-svcca"),
    "svcca": lambda m: m.svcca(threshold=0.95),
    "linear_cka": lambda m: m.linear_cka(),
    "linear_cka_debiased": lambda m: m.linear_cka(debiased=True),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _values(accumulator: MomentAccumulator) -> dict[str, float]:
    return {name: metric(accumulator) for name, metric in METRICS.items()}


def _accumulate(x: np.ndarray, y: np.ndarray, batches: int) -> MomentAccumulator:
    accumulator = MomentAccumulator(fourth_moments=True)
    for xb, yb in zip(np.array_split(x, batches), np.array_split(y, batches), strict=True):
        accumulator.update(xb, yb)
    return accumulator


@pytest.fixture(scope="module")
def data():
    return correlated(3000, 24, 40, seed=11)


@pytest.mark.parametrize("batches", [7, 100])
def test_streaming_over_batches_equals_one_pass(data, batches):
    one_pass, streamed = _values(_accumulate(*data, 1)), _values(_accumulate(*data, batches))
    for name, value in one_pass.items():
        assert abs(streamed[name] - value) <= 1e-10, name


def test_merged_accumulators_equal_one_over_all_data(data):
    x, y = data
    merged = _accumulate(x[:1234], y[:1234], 3) + _accumulate(x[1234:], y[1234:], 5)
    whole = _accumulate(x, y, 1)
    assert merged.n == whole.n
    for name, value in _values(whole).items():
        assert abs(_values(merged)[name] - value) <= 1e-10, name


def test_raw_moments_match_numpy(data):
    x, y = data
    accumulator = _accumulate(x, y, 7)
    np.testing.assert_allclose(accumulator.sum_x.numpy(), x.sum(0), rtol=1e-12)
    np.testing.assert_allclose(accumulator.xy.numpy(), x.T @ y, rtol=1e-11)
    np.testing.assert_allclose(accumulator.covariance().yy.numpy(), np.cov(y, rowvar=False), rtol=1e-11)


@pytest.mark.parametrize("layout", ["row-major", "column-major", "strided", "mixed", "float32"])
def test_centred_products_equal_the_plain_products(layout):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(900, 301)) + 3.0, rng.normal(size=(900, 120)) - 2.0
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = [x.mean(0), y.mean(0), xc.T @ xc, yc.T @ yc, xc.T @ yc]
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    if layout == "column-major":
        tx, ty = tx.T.contiguous().T, ty.T.contiguous().T
    elif layout == "strided":
        tx, ty = torch.from_numpy(np.repeat(x, 2, axis=1))[:, ::2], ty
    elif layout == "mixed":
        tx = tx.T.contiguous().T
    elif layout == "float32":
        tx, ty = tx.float(), ty.float()
        expected = [torch.from_numpy(value).float().numpy() for value in expected]
    tolerance = dict(rtol=1e-4, atol=1e-2) if layout == "float32" else dict(rtol=1e-12, atol=1e-9)
    for got, want in zip(centred_products(tx, ty), expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want, **tolerance)


def test_large_means_do_not_cancel(data):
    # Raw sums would lose ~(1e7)² × 1e-16 of relative precision here; the centred update does not.
    x, y = data
    shifted = _accumulate(x + 1e7, y - 3e6, 100)
    assert abs(shifted.pwcca() - _accumulate(x, y, 1).pwcca()) <= 1e-8


@pytest.mark.parametrize("batches", [1, 7, 100])
def test_debiased_cka_is_exact_with_large_means(data, batches):
    # The fourth-order sums stay centred through every merge, so a mean of 1e6 (spread ~1) costs nothing;
    # raw sums expanded at the end lost about 1e-10 at a mean of 1e3.
    x, y = data
    reference = _accumulate(x, y, 1).linear_cka(debiased=True)
    assert abs(_accumulate(x + 1e6, y - 3e5, batches).linear_cka(debiased=True) - reference) <= 1e-10


def test_statistics_stay_on_the_data_device_in_float64(data):
    accumulator = MomentAccumulator().update(
        torch.from_numpy(data[0]).float(), torch.from_numpy(data[1]).half()
    )
    assert accumulator.scatter_xy.dtype == torch.float64
    assert accumulator.scatter_xy.device == torch.device("cpu")


def _all_reduce_shard(
    rank: int, world: int, init_file: str, empty_rank: int | None = None
) -> dict[str, float]:
    """Accumulate this rank's shard of the data (none on ``empty_rank``), all-reduce, return the metrics."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, y = correlated(3000, 24, 40, seed=11)
        if rank == empty_rank:
            accumulator = MomentAccumulator(fourth_moments=True).all_reduce()
            return {"n": accumulator.n, **_values(accumulator)}
        owners = [r for r in range(world) if r != empty_rank]
        shard = np.array_split(np.arange(len(x)), len(owners))[owners.index(rank)]
        accumulator = _accumulate(x[shard], y[shard], 3).all_reduce()
        return {"n": accumulator.n, **_values(accumulator)}
    finally:
        dist.destroy_process_group()


def _second_rank(init_file: str, out_file: str, empty_rank: int | None) -> None:
    torch.set_num_threads(1)
    torch.save(_all_reduce_shard(1, 2, init_file, empty_rank), out_file)


@pytest.mark.parametrize("empty_rank", [None, 1], ids=["both-ranks-hold-data", "one-rank-saw-nothing"])
def test_two_process_gloo_all_reduce_matches_single_process(data, tmp_path, empty_rank):
    # This process is rank 0; a spawned process is rank 1.
    child = mp.get_context("spawn").Process(
        target=_second_rank, args=(str(tmp_path / "init"), str(tmp_path / "rank1.pt"), empty_rank)
    )
    child.start()
    try:
        results = [_all_reduce_shard(0, 2, str(tmp_path / "init"), empty_rank)]
    finally:
        child.join(timeout=120)
    assert child.exitcode == 0
    results.append(torch.load(tmp_path / "rank1.pt"))
    expected = _values(_accumulate(*data, 1))
    for rank, result in enumerate(results):
        assert result.pop("n") == len(data[0])
        for name, value in expected.items():
            assert abs(result[name] - value) <= 1e-10, (rank, name)


def _mismatched_all_reduces(rank: int, init_file: str) -> list[str]:
    """Two all-reduces that the ranks cannot agree on; returns the error each raised on this rank."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    x, y = correlated(200, 6, 9, seed=rank)
    swapped = MomentAccumulator().update(*((x, y) if rank == 0 else (y, x)))  # (6, 9) here, (9, 6) there
    fourth = MomentAccumulator(fourth_moments=rank == 0).update(x, y)
    messages = []
    try:
        for accumulator in (swapped, fourth):
            with pytest.raises(ActivationShapeError, match="processes hold different statistics") as error:
                accumulator.all_reduce()
            messages.append(str(error.value))
    finally:
        dist.destroy_process_group()
    return messages


def _second_mismatched_rank(init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    torch.save(_mismatched_all_reduces(1, init_file), out_file)


def test_all_reduce_refuses_processes_with_different_statistics(tmp_path):
    # Summing (6, 9) blocks with (9, 6) ones, or fourth-order sums with none, would be silently wrong (or
    # abort gloo): every rank must raise the same error instead.
    child = mp.get_context("spawn").Process(
        target=_second_mismatched_rank, args=(str(tmp_path / "init"), str(tmp_path / "rank1.pt"))
    )
    child.start()
    try:
        messages = _mismatched_all_reduces(0, str(tmp_path / "init"))
    finally:
        child.join(timeout=120)
    assert child.exitcode == 0
    assert torch.load(tmp_path / "rank1.pt") == messages
    assert "(6, 6) to (9, 9)" in messages[0] and "[False, True]" in messages[1]


def test_update_never_modifies_the_callers_activations(data):
    x = torch.from_numpy(np.ascontiguousarray(data[0].T)).T  # a transposed view: (n, d) over (d, n) memory
    y = torch.from_numpy(data[1].copy())
    before = x.clone(), y.clone()
    MomentAccumulator(fourth_moments=True).update(x, y)
    assert torch.equal(x, before[0]) and torch.equal(y, before[1])
