"""What each command checks before it writes anything: one function per command, cheap checks only.

A user mistake found here is an ``OptionError``: the CLI prints one line naming the bad value and exits 2,
and no file or folder has been created. Checks that need the data or the model (labels, image size, init
ranges) run in the library right after these, still before the first write.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .errors import TransfusionError


class OptionError(TransfusionError, ValueError):
    """A command-line option with a bad value, found before anything was written."""


def at_least(option: str, value: float | None, low: float) -> None:
    if value is not None and value < low:
        raise OptionError(f"{option} must be >= {low}, got {value}")


def check_model_source(option: str, source: str) -> None:
    """A run folder / ``local-dir:`` that exists and holds config.json, ``hf-hub:…``, or a timm model name."""
    import timm

    import timm_transfusion  # noqa: F401  (registers the project's architectures)

    from .source_kind import local_path, source_kind

    kind = source_kind(source)
    if kind in ("local-dir", "folder", "file"):
        path = local_path(source)
        if not path.exists():
            raise OptionError(f"{option} {source!r}: {str(path)!r} does not exist")
        if not path.is_dir() or not (path / "config.json").is_file():
            raise OptionError(
                f"{option} {source!r} is not a run folder (no config.json); pass a folder written by "
                "training (or timm's save_for_hf), hf-hub:ORG/NAME or a timm model name"
            )
        return
    if kind == "hf-hub":
        return
    architecture = source.partition(".")[0]
    if not timm.is_model(architecture):
        from .train.validation import suggest

        hint = suggest(architecture, timm.list_models())
        raise OptionError(
            f"{option} {source!r} is neither an existing run folder nor a timm model name{hint} "
            "(also accepted: local-dir:PATH, hf-hub:ORG/NAME)"
        )


def check_device(device: str | None) -> None:
    import torch

    if device is None:
        return
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise OptionError(f"--device {device!r} is not a device (e.g. cpu, cuda, cuda:1): {error}") from error
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count or count == 0:
            raise OptionError(f"--device {device}: this machine has {count} CUDA device(s); use cpu")


def check_cca(args: argparse.Namespace) -> None:
    """``transfusion cca``: numbers, device, both models, the dataset spec and ``--out``."""
    from .data import DatasetSpecError, parse_spec
    from .similarity.pipeline import check_report_folder

    for option, value, low in (
        ("--limit", args.limit, 1),
        ("--img-size", args.img_size, 1),
        ("--batch-size", args.batch_size, 1),
        ("--workers", args.workers, 0),
        ("--max-positions", args.max_positions, 1),
        ("--epsilon", args.epsilon, 0),
        ("--seed", args.seed, 0),
    ):
        at_least(option, value, low)
    check_device(args.device)
    try:
        parse_spec(args.dataset)
    except DatasetSpecError as error:
        raise OptionError(f"--dataset: {error}") from error
    check_report_folder(Path(args.out))  # the library's own check, run before the models are looked at
    check_model_source("RUN_OR_MODEL_A", args.model_a)
    check_model_source("RUN_OR_MODEL_B", args.model_b)


def check_repo_id(repo_id: str) -> None:
    """``user/name`` or ``name`` as the Hub allows it (huggingface_hub's own rule)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise OptionError(f"USER/REPO {repo_id!r} is not a valid Hub repo id: {error}") from error


def check_publish(args: argparse.Namespace) -> None:
    """``transfusion card`` / ``push``: the folders exist and are what they claim; the repo id is valid."""
    for option, value in (("--similarity", args.similarity), ("--experiment", args.experiment)):
        if value is not None and not Path(value).is_dir():
            state = "is not a folder" if Path(value).exists() else "does not exist"
            raise OptionError(f"{option} {value!r} {state}")
    repo_id = getattr(args, "repo_id", None)
    if repo_id:
        check_repo_id(repo_id)
    revision = getattr(args, "revision", None)
    if revision is not None and (not revision or re.search(r"[\s~^:?*\[\\]|\.\.", revision)):
        raise OptionError(f"--revision {revision!r} is not a valid branch name")
    if getattr(args, "create_pr", False) and revision and revision.startswith("refs/pr/"):
        raise OptionError(f"--create-pr opens a new pull request; it cannot target {revision!r}")


def check_workers(args: argparse.Namespace) -> None:
    """``transfusion experiment [run]``: worker options, before plan.json or any cell is written."""
    import shlex
    import shutil

    stale_after = getattr(args, "stale_after", None)
    if stale_after is not None and not stale_after > 0:
        raise OptionError(f"--stale-after must be > 0 seconds, got {stale_after}")
    at_least("--jobs", getattr(args, "jobs", None), 1)
    launcher = getattr(args, "launcher", None)
    if launcher is None:
        return
    try:
        words = shlex.split(launcher)
    except ValueError as error:
        raise OptionError(f"--launcher {launcher!r} is not a command line: {error}") from error
    if not words:
        raise OptionError("--launcher is empty; give a command such as 'accelerate launch --num_processes 8'")
    if shutil.which(words[0]) is None:
        raise OptionError(f"--launcher {launcher!r}: {words[0]!r} is not a command on PATH")
