"""Training throughput: the accelerate loop (as in timm_transfusion.train) vs a bare PyTorch loop.

Same model, batch, optimizer and data for both; reports images/s of each, their ratio (goal >= 0.90), and the
input pipeline alone (data-loading headroom). CPU default: cbr_small at 28 px on RetinaMNIST (synthetic fundus
images if ../shared/data is absent). On a GPU: ``--model resnet50 --img-size 224 --mixed-precision bf16
--batch-size 256 --data-on-device`` (uint8 batches kept on the device, as in the design notes' anchor figures).

    python benchmarks/bench_train.py                      # CPU, cbr_small 28 px
    python benchmarks/bench_train.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from timm.optim import create_optimizer_v2

import timm_transfusion
from timm_transfusion.data import (
    TransformedDataset,
    build_transform,
    data_config_for,
    load_dataset_spec,
    normalize_on_device,
)
from timm_transfusion.train.evaluation import task_loss

RETINA = Path(__file__).resolve().parents[2] / "shared" / "data" / "retinamnist.npz"


def make_loader(model: torch.nn.Module, args: argparse.Namespace) -> tuple[torch.utils.data.DataLoader, dict]:
    spec = f"npz:{RETINA}" if RETINA.is_file() else "synthetic:fundus:size=28"
    dataset = load_dataset_spec(spec, "train")
    data_config = data_config_for(model, args.img_size)
    wrapped = TransformedDataset(dataset, build_transform(data_config, training=True), seed=0)
    loader = torch.utils.data.DataLoader(
        wrapped, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers
    )
    print(f"data: {spec} ({len(dataset)} train images) at {args.img_size} px, batch {args.batch_size}")
    return loader, data_config


def batches(loader, device: torch.device, on_device: bool, count: int):
    """``count`` batches: streamed from the loader, or ``on_device``: 8 batches cached on the device, cycled."""
    if not on_device:
        yield from itertools.islice(itertools.cycle(loader), count)
        return
    cached = [{k: v.to(device) for k, v in b.items()} for b in itertools.islice(loader, 8)]
    yield from itertools.islice(itertools.cycle(cached), count)


def loader_alone(loader, steps: int) -> float:
    start, seen = time.perf_counter(), 0
    for batch in itertools.islice(itertools.cycle(loader), steps):
        seen += len(batch["label"])
    return seen / (time.perf_counter() - start)


def bare_loop(model, data_config, loader, args, device) -> float:
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.01)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.mixed_precision == "bf16")
    model.train()

    def step(batch):
        images = normalize_on_device(batch["pixel_values"].to(device, non_blocking=True), data_config)
        with autocast:
            loss = task_loss(model(images), batch["label"].to(device), False)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return timed(step, batches(loader, device, args.data_on_device, args.warmup + args.steps), args, device)


def accelerate_loop(model, data_config, loader, args) -> float:
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.01)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()

    def step(batch):
        with accelerator.accumulate(model):
            images = normalize_on_device(batch["pixel_values"], data_config)
            loss = task_loss(model(images), batch["label"], False)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()

    stream = batches(loader, accelerator.device, args.data_on_device, args.warmup + args.steps)
    return timed(step, stream, args, accelerator.device)


def timed(step, stream, args, device: torch.device) -> float:
    """Images/s over ``args.steps`` steps after ``args.warmup`` untimed ones."""
    for i, batch in enumerate(stream):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="cbr_small")
    parser.add_argument("--img-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating bare/accelerate rounds; medians reported"
    )
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--mixed-precision", choices=["no", "bf16"], default="no")
    parser.add_argument("--data-on-device", action="store_true", help="cycle 8 batches cached on the device")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}, "
        f"torch threads {torch.get_num_threads()}, model {args.model}, mixed precision {args.mixed_precision}"
    )

    def fresh_model() -> torch.nn.Module:
        torch.manual_seed(0)
        return timm_transfusion.create_model(args.model, num_classes=5).to(device)

    loader, data_config = make_loader(fresh_model(), args)
    results = {"loader alone": [], "bare PyTorch loop": [], "accelerate loop": []}
    for _ in range(args.rounds):
        results["loader alone"].append(loader_alone(loader, args.steps))
        results["bare PyTorch loop"].append(bare_loop(fresh_model(), data_config, loader, args, device))
        results["accelerate loop"].append(accelerate_loop(fresh_model(), data_config, loader, args))
    for name, values in results.items():
        print(
            f"{name:18s} {statistics.median(values):9.1f} img/s   (rounds: {', '.join(f'{v:.0f}' for v in values)})"
        )
    ratio = statistics.median(results["accelerate loop"]) / statistics.median(results["bare PyTorch loop"])
    print(f"accelerate / bare = {ratio:.3f} (goal >= 0.90)")


if __name__ == "__main__":
    main()
