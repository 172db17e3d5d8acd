"""Training options: one dataclass, its command-line flags, and the conversion between them."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields

from .validation import PIPELINE_CHOICES, TrainConfigError, validate_config

__all__ = ["TrainConfig", "TrainConfigError", "add_train_arguments", "config_from_args"]


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``train_args.json`` in the run folder."""

    model: str
    dataset: str
    output: str
    init: str = "random"
    init_source: str | None = None
    init_seed: int | None = None
    train_split: str = "train"
    eval_split: str = "val"
    select_split: str | None = None  # also evaluated once at the end (experiments choose the lr on it)
    image_column: str | None = None
    label_column: str | None = None
    num_classes: int | None = None
    img_size: int | None = None
    augment: bool = True
    pipeline: str = (
        "auto"  # device (uint8 batches resized on the device) | pil (timm's PIL transforms) | auto
    )
    channels_last: bool = False
    compile: bool = False
    batch_size: int = 64
    eval_batch_size: int | None = None
    grad_accum: int = 1
    max_steps: int = 1000
    opt: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    sched: str = "cosine"
    warmup_steps: int = 0
    min_lr: float = 0.0
    clip_grad: float | None = None
    mixed_precision: str = "no"
    seed: int = 0
    eval_every: int = 100
    eval_log_start: int = 10  # also evaluate at 10, 20, 40, … (dense early, where inits differ); 0: off
    auc_thresholds: list[float] = field(default_factory=lambda: [0.7, 0.75])
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    workers: int = 0
    log_with: str = "auto"
    progress: bool = True
    save_predictions: bool = False
    resume: bool = False
    overwrite: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Raise ``TrainConfigError`` naming the first option out of range or unknown (see ``validation``)."""
        validate_config(self)


def float_list(text: str) -> list[float]:
    """``0.7,0.75`` -> [0.7, 0.75] (argparse type)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.7,0.75, got {text!r}"
        ) from None


def add_train_arguments(parser: argparse.ArgumentParser, *, grid: bool = False) -> None:
    """Flags shared by ``transfusion train``, ``scripts/train.py`` and (``grid=True``) ``transfusion experiment``."""
    d = TrainConfig("", "", "")
    parser.add_argument("--model", required=True, help="timm model name, e.g. cbr_small, resnet50")
    parser.add_argument(
        "--dataset", required=True, help="npz:PATH | imagefolder:DIR | hf:NAME[:CONFIG] | synthetic:NAME"
    )
    parser.add_argument("--output", required=True, help="run folder (experiment: report folder)")
    if not grid:
        parser.add_argument(
            "--init", default=d.init, help="random | pretrained | meanvar | transfusion-K[+meanvar]"
        )
        parser.add_argument(
            "--init-source", default=None, help="weights the init reads (timm name, file, local-dir:)"
        )
        parser.add_argument("--init-seed", type=int, default=None, help="seed of the init (default: --seed)")
        parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--train-split", default=d.train_split)
    parser.add_argument(
        "--eval-split",
        default="test" if grid else d.eval_split,
        help="split to evaluate on ('val' also finds validation)" + (" (default: test)" if grid else ""),
    )
    parser.add_argument(
        "--select-split",
        default="val" if grid else None,
        type=lambda text: None if text.lower() == "none" else text,
        help="split evaluated once at the end"
        + (" that --lr-grid chooses on (default: val; none: off)" if grid else " (e.g. val)"),
    )
    parser.add_argument("--image-column", default=None)
    parser.add_argument(
        "--label-column", default=None, help="label column; several comma-separated = multi-label"
    )
    parser.add_argument("--num-classes", type=int, default=None, help="default: from the dataset's labels")
    parser.add_argument(
        "--img-size", type=int, default=None, help="resize images to this size in px (default: native)"
    )
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="no random crop / flip")
    parser.add_argument(
        "--pipeline",
        choices=PIPELINE_CHOICES,
        default=d.pipeline,
        help="input pipeline: device (uint8 batches cropped and resized on the device), pil (timm's PIL "
        "transforms per image) or auto (device when all images share one size and fit in memory)",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="channels-last memory format for model and inputs"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model (first steps compile)"
    )
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    parser.add_argument("--eval-batch-size", type=int, default=None)
    parser.add_argument("--grad-accum", type=int, default=d.grad_accum, help="gradient accumulation steps")
    parser.add_argument(
        "--max-steps", type=int, default=d.max_steps, help="optimizer steps (0: evaluate only)"
    )
    parser.add_argument("--opt", default=d.opt, help="timm optimizer name (create_optimizer_v2)")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument(
        "--sched", default=d.sched, help="timm scheduler name (create_scheduler_v2), per step"
    )
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--min-lr", type=float, default=d.min_lr)
    parser.add_argument(
        "--clip-grad", type=float, default=None, help="max gradient norm (> 0; default: none)"
    )
    parser.add_argument(
        "--mixed-precision",
        choices=["no", "fp16", "bf16"],
        default=d.mixed_precision,
        help="fp16 needs a GPU",
    )
    parser.add_argument("--eval-every", type=int, default=d.eval_every, help="a regular evaluation grid")
    parser.add_argument(
        "--eval-log-start",
        type=int,
        default=d.eval_log_start,
        help="also evaluate at this step and its doublings (10, 20, 40, ...; 0: off)",
    )
    parser.add_argument("--auc-thresholds", type=float_list, default=d.auc_thresholds, help="e.g. 0.7,0.75")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="0: no checkpoints")
    parser.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help="0 keeps all")
    parser.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    parser.add_argument(
        "--log-with", default=d.log_with, help="auto (tensorboard if installed) | tensorboard | none"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--save-predictions", action="store_true", help="write eval_predictions.npz")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace a different run in --output")


def config_from_args(args: argparse.Namespace, **overrides: object) -> TrainConfig:
    """Build a TrainConfig from parsed flags (unknown namespace entries are ignored)."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values.update(overrides)
    return TrainConfig(**values)
