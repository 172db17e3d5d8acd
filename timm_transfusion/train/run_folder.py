"""The run folder: atomic writes, the overwrite guard, checkpoints, and the final timm-loadable export.

Layout (read by the similarity and hub tools): ``config.json`` + ``model.safetensors`` (timm ``save_for_hf``),
``metrics.jsonl``, ``summary.json`` (written last: its presence marks a complete run), ``train_args.json``,
``checkpoints/step_NNNNNNNN/`` (accelerate ``save_state``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from timm.models import save_for_hf

from ..files import TMP_PREFIX, default_file_mode, write_text_atomic

CHECKPOINT_PREFIX = "step_"
# Options that may change between a run and its resumption without making it a different run.
RUN_CONTROL_KEYS = frozenset(
    {
        "resume",
        "overwrite",
        "output",
        "progress",
        "log_with",
        "workers",
        "save_predictions",
        "checkpoint_every",
        "keep_checkpoints",
    }
)


class OutputFolderError(RuntimeError):
    """The output folder holds something this run must not silently reuse or replace."""


def _finite(value: Any) -> Any:
    """NaN / inf (an AUC undefined on a one-class split) as null: strict JSON, readable by every tool."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(_finite(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_jsonl_atomic(path: Path, records: list[dict]) -> None:
    lines = (json.dumps(_finite(r), sort_keys=True, allow_nan=False) + "\n" for r in records)
    write_text_atomic(path, "".join(lines))


def check_output_folder(folder: Path, train_args: dict, *, resume: bool, overwrite: bool) -> str:
    """Classify ``folder`` as ``"empty"``, ``"same"`` (holds this run) or ``"different"`` (another run).

    Raises ``OutputFolderError`` when the folder holds something else than a run, a different run without
    ``overwrite``, or this same run without ``resume`` or ``overwrite``.
    """
    if not folder.exists() or not any(folder.iterdir()):
        return "empty"
    saved = folder / "train_args.json"
    if not saved.is_file():
        raise OutputFolderError(
            f"output folder {str(folder)!r} is not empty and holds no run (no train_args.json); "
            "refusing to use or delete it: choose another --output"
        )
    previous = json.loads(saved.read_text())
    differing = sorted(
        k
        for k in set(previous) | set(train_args)
        if k not in RUN_CONTROL_KEYS and previous.get(k) != train_args.get(k)
    )
    if differing and not overwrite:
        changes = ", ".join(f"{k}: {previous.get(k)!r} -> {train_args.get(k)!r}" for k in differing)
        raise OutputFolderError(
            f"output folder {str(folder)!r} holds a different run ({changes}); "
            "pass --overwrite to replace it or choose another --output"
        )
    if not differing and not (resume or overwrite):
        raise OutputFolderError(
            f"output folder {str(folder)!r} already holds this run; pass --resume to continue it "
            "or --overwrite to start over"
        )
    return "different" if differing else "same"


def clear_run_folder(folder: Path) -> None:
    """Delete a run folder's contents (only called after ``check_output_folder`` saw train_args.json).

    summary.json goes first: it marks a finished run, so a kill mid-way never leaves it beside missing weights.
    """
    (folder / "summary.json").unlink(missing_ok=True)
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def checkpoint_dir(folder: Path, step: int) -> Path:
    return folder / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:08d}"


def all_checkpoints(folder: Path) -> list[Path]:
    """Renamed-into-place checkpoints, oldest first (half-written ones live under a ``.tmp-`` name)."""
    root = folder / "checkpoints"
    return sorted(p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()) if root.is_dir() else []


def temporary_twin(path: Path) -> Path:
    """Where to build ``path`` before renaming it into place."""
    return path.with_name(TMP_PREFIX + path.name)


def remove_stale_temporaries(folder: Path) -> None:
    """Leftovers of a killed write: never trusted, removed before a run (re)starts."""
    for root in (folder, folder / "checkpoints"):
        for stale in root.glob(TMP_PREFIX + "*") if root.is_dir() else ():
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints (0 keeps all)."""
    root = folder / "checkpoints"
    done = sorted(p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def export_model(
    model: torch.nn.Module, folder: Path, *, data_config: dict, label_names: list[str] | None
) -> None:
    """``config.json`` + ``model.safetensors`` via timm ``save_for_hf``, built aside and renamed into place."""
    staging = temporary_twin(folder / "export")
    if staging.exists():
        shutil.rmtree(staging)
    model_config = {"label_names": label_names} if label_names else None
    export_config = {k: data_config[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct")}
    save_for_hf(model, staging, model_config=model_config, safe_serialization=True, data_config=export_config)
    for name in ("model.safetensors", "config.json"):
        os.chmod(staging / name, default_file_mode())
        os.replace(staging / name, folder / name)
    shutil.rmtree(staging)
