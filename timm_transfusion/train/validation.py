"""Every training option checked before a run touches its output folder: ranges, names, devices.

Names are checked against the libraries that will use them (timm's model registry, ``create_optimizer_v2``,
``create_scheduler_v2``, the initializer registry, accelerate's trackers), so anything those accept is
accepted here and a misspelling is caught with a suggestion instead of a traceback after the first write.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TransfusionError

if TYPE_CHECKING:
    from .config import TrainConfig

# (option, lowest valid value, strict): checked in this order; None values (not set) are skipped.
LOWER_BOUNDS: tuple[tuple[str, float, bool], ...] = (
    ("batch_size", 1, False),
    ("eval_batch_size", 1, False),
    ("grad_accum", 1, False),
    ("max_steps", 0, False),
    ("eval_every", 1, False),
    ("eval_log_start", 0, False),
    ("checkpoint_every", 0, False),
    ("keep_checkpoints", 0, False),
    ("workers", 0, False),
    ("num_classes", 1, False),
    ("img_size", 1, False),
    ("lr", 0, True),
    ("weight_decay", 0, False),
    ("warmup_steps", 0, False),
    ("min_lr", 0, False),
    ("clip_grad", 0, True),
    ("seed", 0, False),
    ("init_seed", 0, False),
)
PRECISIONS = ("no", "fp16", "bf16")
PIPELINE_CHOICES = ("auto", "device", "pil")  # data.pipeline.PIPELINES, without importing datasets here
TRACKER_CHOICES = ("auto", "none")
SCHEDULERS = ("cosine", "tanh", "step", "multistep", "poly", "constant", "wsd", "rsqrt", "plateau")


class TrainConfigError(TransfusionError, ValueError):
    """A training option outside its valid range, or a name no library knows."""


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def suggest(value: str, choices: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or nothing."""
    close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_ranges(config: TrainConfig) -> None:
    for name, low, strict in LOWER_BOUNDS:
        value = getattr(config, name)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise TrainConfigError(f"{flag(name)} must be a finite number, got {value}")
        if value < low or (strict and value == low):
            raise TrainConfigError(f"{flag(name)} must be {'>' if strict else '>='} {low}, got {value}")
    if config.min_lr > config.lr:
        raise TrainConfigError(
            f"--min-lr {config.min_lr} is above --lr {config.lr}; the schedule decays to it"
        )
    bad = [t for t in config.auc_thresholds if not 0 < t <= 1]
    if bad:
        raise TrainConfigError(f"--auc-thresholds must lie in (0, 1] (AUC values), got {bad}")


def check_model(name: str) -> None:
    """A timm model name, ``hf-hub:ORG/NAME`` or an existing ``local-dir:PATH``."""
    import timm

    import timm_transfusion  # noqa: F401  (registers the project's architectures)

    if name.startswith("hf-hub:"):
        return
    if name.startswith("local-dir:"):
        path = Path(name.removeprefix("local-dir:"))
        if not (path / "config.json").is_file():
            state = "has no config.json" if path.is_dir() else "does not exist"
            raise TrainConfigError(f"--model {name}: the folder {str(path)!r} {state}")
        return
    if not timm.is_model(name):
        hint = suggest(name, timm.list_models())
        raise TrainConfigError(
            f"--model {name!r} is not a timm model{hint} (timm.list_models() lists them; "
            "hf-hub:ORG/NAME and local-dir:PATH work too)"
        )


def check_optimizer(config: TrainConfig) -> None:
    """Build the optimizer on one dummy parameter: exactly what the run will ask timm for."""
    import torch
    from timm.optim import create_optimizer_v2, list_optimizers

    known = list_optimizers()
    if config.opt.lower().split("_")[-1] not in known:
        raise TrainConfigError(
            f"--opt {config.opt!r} is not a timm optimizer{suggest(config.opt, known)} "
            "(timm.optim.list_optimizers() lists them)"
        )
    try:
        create_optimizer_v2(
            torch.nn.Linear(1, 1), opt=config.opt, lr=config.lr, weight_decay=config.weight_decay
        )
    except (
        ImportError,
        AssertionError,
        RuntimeError,
        TypeError,
        ValueError,
    ) as error:  # bitsandbytes, apex, devices
        raise TrainConfigError(f"--opt {config.opt!r} cannot be used here: {error}") from error


def create_step_scheduler(optimizer: Any, config: TrainConfig) -> Any:
    """timm's scheduler for ``config`` stepped once per optimizer step (the loop's schedule; None: no schedule)."""
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=config.sched,
        num_epochs=max(config.max_steps, 1),
        warmup_epochs=config.warmup_steps,
        min_lr=config.min_lr,
        step_on_epochs=False,
        updates_per_epoch=1,
    )
    return scheduler


def check_scheduler(config: TrainConfig) -> None:
    """Build the per-step schedule timm will build (older timm returns no scheduler for an unknown name)."""
    import torch

    unknown = TrainConfigError(
        f"--sched {config.sched!r} is not a timm scheduler{suggest(config.sched, list(SCHEDULERS))} "
        f"(choose one of {', '.join(SCHEDULERS)})"
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    try:
        scheduler = create_step_scheduler(optimizer, config)
    except (AssertionError, ValueError) as error:  # e.g. plateau, which only steps per epoch
        if config.sched not in SCHEDULERS:
            raise unknown from error
        raise TrainConfigError(f"--sched {config.sched!r} cannot schedule per step: {error}") from error
    if scheduler is None:
        raise unknown


def check_precision(config: TrainConfig) -> None:
    """fp16 needs an accelerator: on the CPU accelerate would run fp32 while the run records fp16."""
    import torch
    from accelerate.utils import is_mps_available, is_npu_available, is_xpu_available

    if config.mixed_precision not in PRECISIONS:
        raise TrainConfigError(
            f"--mixed-precision {config.mixed_precision!r}: choose one of {', '.join(PRECISIONS)}"
        )
    if config.mixed_precision != "fp16":
        return
    if not (torch.cuda.is_available() or is_mps_available() or is_xpu_available() or is_npu_available()):
        raise TrainConfigError(
            "--mixed-precision fp16 needs a GPU and none is available here; use bf16 (supported on CPU) or no"
        )


def check_pipeline(config: TrainConfig) -> None:
    """A known input pipeline, and ``--compile`` only where this torch can compile at all."""
    if config.pipeline not in PIPELINE_CHOICES:
        raise TrainConfigError(
            f"--pipeline {config.pipeline!r}: choose one of {', '.join(PIPELINE_CHOICES)}"
            + suggest(config.pipeline, list(PIPELINE_CHOICES))
        )
    if config.compile:
        import torch

        try:
            torch.compile(torch.nn.Identity())  # lazy: raises only where torch.compile is unsupported
        except RuntimeError as error:
            raise TrainConfigError(
                f"--compile: torch.compile is not available here ({error}); train without --compile"
            ) from error


def check_trackers(log_with: str) -> None:
    import accelerate.utils

    known = [tracker.value for tracker in accelerate.utils.LoggerType if tracker.value != "all"]
    if log_with in TRACKER_CHOICES or log_with == "":
        return
    if log_with not in known:
        choices = ", ".join([*TRACKER_CHOICES, *known])
        raise TrainConfigError(
            f"--log-with {log_with!r} is not a tracker{suggest(log_with, known)}; choose {choices}"
        )
    available = getattr(accelerate.utils, f"is_{log_with}_available", None)
    if available is not None and not available():
        raise TrainConfigError(
            f"--log-with {log_with}: the {log_with} package is not installed (or use none)"
        )


def check_output(output: str) -> None:
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise TrainConfigError(f"--output {output!r} is a file, not a folder; choose a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TrainConfigError(f"--output {output!r}: {str(parent)!r} is a file, not a folder")
            break


def validate_config(config: TrainConfig) -> None:
    """Raise ``TrainConfigError`` for the first option that is out of range or unknown (cheap checks first)."""
    from ..data import parse_spec
    from ..init.registry import resolve_init

    check_ranges(config)
    check_output(config.output)
    parse_spec(config.dataset)
    check_precision(config)
    check_pipeline(config)
    check_trackers(config.log_with)
    check_model(config.model)
    resolve_init(config.init)
    check_optimizer(config)
    check_scheduler(config)
