"""Training throughput in one run: the input pipelines alone, a bare PyTorch loop, and the project's loop.

Same model, batch, optimizer and data throughout:
- **input pipeline alone**: the PIL path (timm's transforms per image, ``--workers`` DataLoader workers) and the
  device path (uint8 batches, crop, resize and normalisation on the device), training augmentation on, images/s;
- **bare loop**: plain PyTorch on the training set preloaded on the device, already resized and normalised
  (no per-batch input work at all: the ceiling);
- **project loop**: ``timm_transfusion.train.train`` itself with each pipeline; its rate is the
  ``train_images_per_s`` of the final evaluation record (time spent evaluating is left out).

Ratios: device / PIL loader, and project / bare for each pipeline. Rounds alternate; medians are reported.
The CPU default is cbr_small on RetinaMNIST 28 -> 64 px, batch 64 (synthetic fundus images if ../shared/data
is absent). Unchanged on a GPU, e.g.::

    python benchmarks/bench_train.py                                   # CPU: cbr_small, 64 px
    python benchmarks/bench_train.py --model mobilenetv1_025 --img-size 224 --batch-size 256 \\
        --mixed-precision bf16 --channels-last --steps 100 --workers 16
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from timm.optim import create_optimizer_v2

import timm_transfusion
from timm_transfusion.data import build_pipeline, data_config_for, load_dataset_spec
from timm_transfusion.train import TrainConfig, train
from timm_transfusion.train.evaluation import task_loss

RETINA = Path(__file__).resolve().parents[2] / "shared" / "data" / "retinamnist.npz"


def dataset_spec() -> str:
    return f"npz:{RETINA}" if RETINA.is_file() else "synthetic:fundus:size=28"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def epochs(pipeline, loader):
    """Batches of epoch after epoch, each one loaded afresh (``itertools.cycle`` would replay cached ones)."""
    for epoch in itertools.count():
        pipeline.dataset.set_epoch(epoch)
        yield from loader


def pipeline_alone(pipeline, args, device: torch.device) -> float:
    """Images/s of a pipeline delivering model-ready batches on ``device`` (after one untimed batch)."""
    loader = pipeline.loader(batch_size=args.batch_size, shuffle=True, drop_last=True, workers=args.workers)
    stream = itertools.islice(epochs(pipeline, loader), args.pipeline_batches + 1)
    seen, start = 0, None
    for batch in stream:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        images = pipeline.to_model(batch)
        if start is None:
            sync(device)
            start = time.perf_counter()
            continue
        seen += len(images)
    sync(device)
    return seen / (time.perf_counter() - start)


def bare_loop(model_name: str, num_classes: int, preloaded: tuple, args, device: torch.device) -> float:
    """Plain PyTorch: random batches indexed from device tensors, forward, backward, AdamW step."""
    images, labels = preloaded
    set_seed(0)
    model = timm_transfusion.create_model(model_name, num_classes=num_classes).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.01)
    if args.compile:
        model.compile()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.mixed_precision == "bf16")
    model.train()
    generator = torch.Generator(device=device).manual_seed(0)
    start = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(device)
            start = time.perf_counter()
        index = torch.randint(len(images), (args.batch_size,), device=device, generator=generator)
        with autocast:
            loss = task_loss(model(images[index]), labels[index], False)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def project_loop(pipeline: str, folder: Path, args) -> float:
    """``train()`` for ``warmup + steps`` steps, evaluated after the warm-up and at the end; the end's rate."""
    config = TrainConfig(
        model=args.model,
        dataset=dataset_spec(),
        output=str(folder),
        eval_split="test",
        img_size=args.img_size,
        batch_size=args.batch_size,
        eval_batch_size=256,
        max_steps=args.warmup + args.steps,
        eval_every=args.steps,
        eval_log_start=args.warmup,
        sched="constant",
        mixed_precision=args.mixed_precision,
        pipeline=pipeline,
        channels_last=args.channels_last,
        compile=args.compile,
        workers=args.workers,
        log_with="none",
        progress=False,
        overwrite=True,
    )
    train(config)
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return records[-1]["train_images_per_s"]


def preload(dataset, data_config: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole training split resized and normalised once (eval transform), as device tensors."""
    pipeline = build_pipeline(dataset, data_config, pipeline="device", training=False, progress=False)
    batch = pipeline.dataset.__getitems__(list(range(len(pipeline.dataset))))
    images = pipeline.to_model({k: v.to(device) for k, v in batch.items()})
    return images, batch["label"].to(device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="cbr_small")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="timed steps (or batches) per measurement")
    parser.add_argument(
        "--pipeline-batches", type=int, default=200, help="batches per input-pipeline measurement"
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps first (compilation happens here)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians reported")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (both pipelines)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--mixed-precision", choices=["no", "bf16"], default="no")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}, torch threads "
        f"{torch.get_num_threads()}, model {args.model}, {args.img_size} px, batch {args.batch_size}, "
        f"precision {args.mixed_precision}, channels-last {args.channels_last}, compile {args.compile}, "
        f"workers {args.workers}"
    )
    dataset = load_dataset_spec(dataset_spec(), "train")
    num_classes = len(dataset.features["label"].names)
    data_config = data_config_for(
        timm_transfusion.create_model(args.model, num_classes=num_classes), args.img_size
    )
    print(f"data: {dataset_spec()} ({len(dataset)} train images)")
    pipelines = {
        name: build_pipeline(dataset, data_config, pipeline=name, training=True, progress=False)
        for name in ("pil", "device")
    }
    preloaded = preload(dataset, data_config, device)
    results: dict[str, list[float]] = {
        "PIL pipeline alone": [],
        "device pipeline alone": [],
        "bare loop, preloaded": [],
        "project loop, device path": [],
        "project loop, PIL path": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            results["PIL pipeline alone"].append(pipeline_alone(pipelines["pil"], args, device))
            results["device pipeline alone"].append(pipeline_alone(pipelines["device"], args, device))
            results["bare loop, preloaded"].append(
                bare_loop(args.model, num_classes, preloaded, args, device)
            )
            for name in ("device", "pil"):
                rate = project_loop(name, Path(scratch) / name, args)
                results[f"project loop, {'PIL' if name == 'pil' else name} path"].append(rate)
    medians = {name: statistics.median(values) for name, values in results.items()}
    print()
    for name, values in results.items():
        print(f"{name:27s} {medians[name]:10.0f} img/s   (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    ratios = {
        "device / PIL pipeline": medians["device pipeline alone"] / medians["PIL pipeline alone"],
        "project (device) / bare": medians["project loop, device path"] / medians["bare loop, preloaded"],
        "project (PIL) / bare": medians["project loop, PIL path"] / medians["bare loop, preloaded"],
    }
    for name, ratio in ratios.items():
        print(f"{name:27s} {ratio:10.2f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "rounds": results, "ratios": ratios}, indent=2
            )
        )


if __name__ == "__main__":
    main()
