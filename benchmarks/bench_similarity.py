"""PWCCA speed and memory: timm_transfusion.similarity against a NumPy google/svcca-style baseline.

    python benchmarks/bench_similarity.py                       # 512 × 20,000 float64 on the CPU + memory check
    python benchmarks/bench_similarity.py --device cuda --neurons 2048 --datapoints 50000   # on a GPU machine

The baseline does what google/svcca does (np.cov over the stacked activations, pinv and an eigh square root
per side, SVD, then PWCCA by a QR over the datapoints) with centred variates, so both compute the same
quantity. Memory: peak RSS of a fresh process that streams N datapoints in batches, for N = 1e5 and 1e6.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from timm_transfusion.similarity import MomentAccumulator, pwcca


def correlated_batch(
    generator: torch.Generator, mixing: torch.Tensor, rows: int, device: str
) -> torch.Tensor:
    """(rows, 2·neurons) post-ReLU activations of two layers that share a latent code, float64."""
    latent = torch.randn(rows, mixing.shape[0], generator=generator, dtype=torch.float64).to(device)
    noise = torch.randn(rows, mixing.shape[1], generator=generator, dtype=torch.float64).to(device)
    return torch.relu(latent @ mixing + noise)


def make_data(neurons: int, datapoints: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(64, 2 * neurons, generator=generator, dtype=torch.float64)
    acts = correlated_batch(generator, mixing, datapoints, "cpu").numpy()
    return acts[:, :neurons], acts[:, neurons:]


def baseline_pwcca(acts1: np.ndarray, acts2: np.ndarray) -> float:
    """google/svcca-style PWCCA on (neurons, datapoints) arrays, centred variates, epsilon = 0."""
    numx = acts1.shape[0]
    sigma = np.cov(acts1, acts2)
    sxx, sxy, syy = sigma[:numx, :numx], sigma[:numx, numx:], sigma[numx:, numx:]
    xmax, ymax = np.abs(sxx).max(), np.abs(syy).max()
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)

    def inverse_sqrt(matrix: np.ndarray) -> np.ndarray:
        values, vectors = np.linalg.eigh(np.linalg.pinv(matrix))
        return vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T

    u, rho, _ = np.linalg.svd(inverse_sqrt(sxx) @ (sxy @ inverse_sqrt(syy)))
    means = acts1.mean(axis=1, keepdims=True)
    variates = u.T @ (acts1 - means)
    basis, _ = np.linalg.qr(variates.T)
    weights = np.abs(basis.T @ acts1.T).sum(axis=1)
    return float((weights / weights.sum()) @ rho)


def streamed_pwcca(x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    accumulator = MomentAccumulator()
    for start in range(0, x.shape[0], batch):
        accumulator.update(x[start : start + batch], y[start : start + batch])
    return accumulator.pwcca()


def timed(function) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, value)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    value = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu_start, value


VARIANTS = ("baseline", "ours", "ours_c_order", "ours_streamed")


def run_variant(name: str, neurons: int, datapoints: int, device: str, repeats: int, batch: int) -> dict:
    """Time one variant ``repeats`` times back to back, in this process: {"times", "cpu_times", "value"}.

    "ours" is ``similarity.pwcca(x, y)`` on the very arrays the baseline reads, (neurons, datapoints) in
    memory, through transposed (datapoints, features) views; "ours_c_order" gets separate C-ordered
    (datapoints, features) copies; "ours_streamed" feeds a MomentAccumulator ``batch`` datapoints at a time.
    """
    x, y = make_data(neurons, datapoints)
    acts1, acts2 = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)
    if name == "baseline":
        run = lambda: baseline_pwcca(acts1, acts2)  # noqa: E731
    elif name == "ours_c_order":
        pair = [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (x, y)]
        run = lambda: pwcca(*pair)  # noqa: E731
    else:
        views = [torch.from_numpy(a).to(device).T for a in (acts1, acts2)]
        run = (lambda: pwcca(*views)) if name == "ours" else (lambda: streamed_pwcca(*views, batch))
    del x, y
    run()  # warm-up: kernels, thread pools, allocator
    timings = [timed(run) for _ in range(repeats)]
    return {
        "times": [wall for wall, _, _ in timings],
        "cpu_times": [cpu for _, cpu, _ in timings],
        "value": timings[-1][2],
    }


def speed(args: argparse.Namespace) -> dict:
    """Best times of each variant, each timed in a fresh process, in ``args.rounds`` rounds.

    Separate processes keep one variant's BLAS threads (NumPy's OpenBLAS for the baseline, SciPy's
    OpenBLAS and torch's OpenMP for ours), which spin for a while after each call, from slowing the
    next variant; the rounds interleave the variants against drifting load on a shared machine.
    """
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            command = [sys.executable, __file__, "--speed-child", name, *_shared_arguments(args)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(output.strip().splitlines()[-1]))
    best = {name: min(t for run in results for t in run["times"]) for name, results in runs.items()}
    cpu = {name: min(t for run in results for t in run["cpu_times"]) for name, results in runs.items()}
    values = {name: results[-1]["value"] for name, results in runs.items()}
    return {
        "neurons": args.neurons,
        "datapoints": args.datapoints,
        "device": args.device,
        "threads": args.threads,
        "openblas": openblas_kernels(),
        "load_average": round(os.getloadavg()[0], 2),
        **{f"{name}_s": round(seconds, 3) for name, seconds in best.items()},
        **{
            f"speedup{name[4:]}": round(best["baseline"] / best[name], 2)
            for name in VARIANTS
            if name != "baseline"
        },
        **{f"{name}_cpu_s": round(seconds, 3) for name, seconds in cpu.items()},
        "cpu_speedup": round(cpu["baseline"] / cpu["ours"], 2),
        "max_abs_diff": max(abs(values["baseline"] - values[name]) for name in VARIANTS[1:]),
        "pwcca": values["ours"],
    }


def openblas_kernels() -> str:
    """The OpenBLAS kernel sets in use: OPENBLAS_CORETYPE (set on some machines) forces older, slower ones."""
    kernels = sorted(
        {info.get("architecture", "?") for info in threadpool_info() if info["internal_api"] == "openblas"}
    )
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return ", ".join(kernels) + (f" (forced by OPENBLAS_CORETYPE={forced})" if forced else "")


def _shared_arguments(args: argparse.Namespace) -> list[str]:
    return [
        f"--neurons={args.neurons}",
        f"--datapoints={args.datapoints}",
        f"--device={args.device}",
        f"--repeats={args.repeats}",
        f"--threads={args.threads}",
        f"--batch={args.batch}",
    ]


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: peak since the last reset), MiB."""
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def stream_for_memory(neurons: int, datapoints: int, batch: int) -> dict:
    """Run in a fresh process: stream ``datapoints`` in batches and report the peak RSS while streaming.

    The peak is reset (Linux: ``/proc/self/clear_refs``) after the imports, so it measures this run only.
    """
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(64, 2 * neurons, generator=generator, dtype=torch.float64)
    accumulator = MomentAccumulator()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _status_mib("VmRSS")
    for start in range(0, datapoints, batch):
        acts = correlated_batch(generator, mixing, min(batch, datapoints - start), "cpu")
        accumulator.update(acts[:, :neurons], acts[:, neurons:])
    value = accumulator.pwcca()
    peak = _status_mib("VmHWM")
    return {
        "datapoints": datapoints,
        "neurons": neurons,
        "batch": batch,
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "streaming_extra_mib": round(peak - before, 1),
        "pwcca": value,
    }


def memory(neurons: int, sizes: list[int], batch: int) -> list[dict]:
    results = []
    for size in sizes:
        command = [
            sys.executable,
            __file__,
            "--memory-child",
            str(size),
            "--neurons",
            str(neurons),
            "--batch",
            str(batch),
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--neurons", type=int, default=512)
    parser.add_argument("--datapoints", type=int, default=20_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="BLAS/OpenMP threads, both"
    )
    parser.add_argument("--batch", type=int, default=10_000, help="datapoints per streamed batch")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per variant")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--speed-child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    threadpool_limits(args.threads)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(stream_for_memory(args.neurons, args.memory_child, args.batch)))
        return
    if args.speed_child:
        run = run_variant(
            args.speed_child, args.neurons, args.datapoints, args.device, args.repeats, args.batch
        )
        print(json.dumps(run))
        return
    result = speed(args)
    print(json.dumps(result))
    print(
        f"PWCCA {args.neurons}×{args.datapoints} on {args.device}, {args.threads} threads, OpenBLAS "
        f"{result['openblas']}: baseline {result['baseline_s']} s, ours {result['ours_s']} s "
        f"({result['speedup']}×), C-order input {result['ours_c_order_s']} s ({result['speedup_c_order']}×), "
        f"streamed in batches of {args.batch:,} {result['ours_streamed_s']} s ({result['speedup_streamed']}×), "
        f"|Δ| ≤ {result['max_abs_diff']:.2e}; CPU time {result['baseline_cpu_s']} vs {result['ours_cpu_s']} s "
        f"({result['cpu_speedup']}×)"
    )
    if args.memory_sizes:
        runs = memory(args.neurons, args.memory_sizes, args.batch)
        for run in runs:
            print(json.dumps(run))
        ratio = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
        print(f"peak RSS {runs[-1]['datapoints']:,} vs {runs[0]['datapoints']:,} datapoints: {ratio:.3f}×")


if __name__ == "__main__":
    main()
