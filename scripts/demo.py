"""`make demo`: the paper's comparison end to end, offline, in minutes on a laptop CPU.

Default (no data needed): pretrain a small CBR net on a SYNTHETIC natural-image-like task (oriented edges and
textures, so its first layer learns edge filters), then compare inits (random, pretrained, Mean Var,
Transfusion) fine-tuning on a SYNTHETIC medical-like task (fundus-like discs whose lesions set the grade).
With ``--data DIR`` (``make demo DATA=../shared/data``): the real ImageNet MobileNet-V1 0.25 on RetinaMNIST.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from timm_transfusion.train import TrainConfig, train
from timm_transfusion.train.experiment import run_experiment

SYNTHETIC_NOTE = (
    "NOTE: this demo uses SYNTHETIC data generated in the package (synthetic:edges for the source network,\n"
    "synthetic:fundus for the medical-like target). Numbers show the method working, not clinical results.\n"
    "For real data: make demo DATA=../shared/data (ImageNet MobileNet-V1 0.25 on RetinaMNIST)."
)


def synthetic_demo(output: Path, quick: bool) -> dict[str, Path]:
    source = TrainConfig(
        model="cbr_small",
        dataset="synthetic:edges" + (":train=512,val=128" if quick else ""),
        output=str(output / "source"),
        batch_size=32,
        max_steps=20 if quick else 400,
        eval_every=10 if quick else 100,
        lr=5e-3,
        progress=not quick,
        resume=True,
    )
    print("1/2 pretraining the source network cbr_small on synthetic:edges (oriented edges / textures)")
    print(f"    source run: {source.output}")
    source_summary = train(source)
    print(f"    source accuracy on its own task: {source_summary['final']['accuracy']:.3f}")
    target = replace(
        source,
        # A small training set (300 images), where transfer matters most in the paper's findings.
        dataset="synthetic:fundus:train=" + ("256,val=96,test=96" if quick else "300"),
        output=str(output / "experiment"),
        max_steps=8 if quick else 150,
        eval_every=4 if quick else 50,
        eval_log_start=2 if quick else 10,
        eval_split="test",
        select_split="val",
        lr=2e-3,
        auc_thresholds=[0.8, 0.85],
    )
    print("2/2 fine-tuning on synthetic:fundus from each init (random, pretrained, meanvar, transfusion-1)")
    return run_experiment(
        target,
        inits=["random", "pretrained", "meanvar", "transfusion-1"],
        seeds=1 if quick else 2,
        source=f"local-dir:{source.output}",
    )


def real_demo(output: Path, data: Path, quick: bool) -> dict[str, Path]:
    weights, dataset = data / "mobilenetv1_025_imagenet.safetensors", data / "retinamnist.npz"
    for path in (weights, dataset):
        if not path.is_file():
            sys.exit(
                f"{path} is missing: DATA must hold mobilenetv1_025_imagenet.safetensors and retinamnist.npz"
            )
    target = TrainConfig(
        model="mobilenetv1_025",
        dataset=f"npz:{dataset}",
        output=str(output / "experiment-retinamnist"),
        img_size=64,
        batch_size=32,
        max_steps=8 if quick else 300,
        eval_every=4 if quick else 100,
        eval_log_start=2 if quick else 10,
        eval_split="test",
        select_split="val",
        auc_thresholds=[0.6, 0.7],
        progress=not quick,
        resume=True,
    )
    print(f"fine-tuning mobilenetv1_025 (ImageNet weights {weights}) on RetinaMNIST from each init")
    return run_experiment(
        target,
        inits=["random", "pretrained", "meanvar", "transfusion-1", "transfusion-2"],
        seeds=1 if quick else 2,
        source=str(weights),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, help="folder with mobilenetv1_025_imagenet.safetensors + retinamnist.npz"
    )
    parser.add_argument(
        "--output", type=Path, help="default runs/demo, with --quick runs/demo-quick (their settings differ)"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny version (seconds), for smoke tests")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (small nets at 32 px gain little from more)"
    )
    args = parser.parse_args(argv)
    args.output = args.output or Path("runs/demo-quick" if args.quick else "runs/demo")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.data is None:
        print(SYNTHETIC_NOTE)
        paths = synthetic_demo(args.output, args.quick)
    else:
        paths = real_demo(args.output, args.data, args.quick)
    print(f"\ndone in {time.perf_counter() - start:.0f} s. Report: {paths['results.md']}")
    print(f"findings: {paths['findings.json']}")
    print(f"plots: {paths['convergence.png']}  {paths['sweep.png']}  {paths['filters.png']}")
    if args.data is None:
        print(SYNTHETIC_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
