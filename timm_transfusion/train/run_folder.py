"""Training's side of the run folder: the overwrite guard, checkpoints and the final timm-loadable export.

File names, control keys and the JSON writers are the schema in :mod:`timm_transfusion.run_folder`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from timm.models import save_for_hf

from ..errors import TransfusionError
from ..files import TMP_PREFIX, default_file_mode
from ..models.slim import stock_export
from ..run_folder import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS,
    CONFIG,
    PREDICTIONS_DIR,
    RUN_CONTROL_KEYS,  # re-exported: the schema owns them
    SUMMARY,
    TRAIN_ARGS,
    WEIGHTS,
)
from ..run_folder import write_json_atomic as write_json_atomic
from ..run_folder import write_jsonl_atomic as write_jsonl_atomic


class OutputFolderError(TransfusionError, RuntimeError):
    """The output folder holds something this run must not silently reuse or replace."""


def check_output_folder(folder: Path, train_args: dict, *, resume: bool, overwrite: bool) -> str:
    """Classify ``folder`` as ``"empty"``, ``"same"`` (holds this run) or ``"different"`` (another run).

    Raises ``OutputFolderError`` when the folder holds something else than a run, a different run without
    ``overwrite``, or this same run without ``resume`` or ``overwrite``.
    """
    if not folder.exists() or not any(folder.iterdir()):
        return "empty"
    saved = folder / TRAIN_ARGS
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
    (folder / SUMMARY).unlink(missing_ok=True)
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def checkpoint_dir(folder: Path, step: int) -> Path:
    return folder / CHECKPOINTS / f"{CHECKPOINT_PREFIX}{step:08d}"


def predictions_path(folder: Path, step: int) -> Path:
    """Where the per-image predictions of the evaluation at ``step`` are kept."""
    return folder / PREDICTIONS_DIR / f"{CHECKPOINT_PREFIX}{step:08d}.npz"


def write_eval_predictions(folder: Path, step: int, predictions: dict[str, np.ndarray]) -> None:
    """One evaluation's ``index`` (N,), ``scores`` (N, C) float32 and ``labels``, written aside and renamed."""
    path = predictions_path(folder, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_twin(path)
    with staging.open("wb") as handle:
        np.savez(handle, **predictions)
    os.chmod(staging, default_file_mode())
    staging.replace(path)


def read_eval_predictions(folder: Path, steps: list[int]) -> list[dict[str, np.ndarray]] | None:
    """The predictions of every evaluation in ``steps``, rows sorted by image index so that runs align;
    None if any evaluation's file is missing."""
    paths = [predictions_path(folder, step) for step in steps]
    if not paths or not all(p.is_file() for p in paths):
        return None
    result = []
    for path in paths:
        with np.load(path) as data:
            order = np.argsort(data["index"], kind="stable")
            result.append({key: data[key][order] for key in ("index", "scores", "labels")})
    return result


def all_checkpoints(folder: Path) -> list[Path]:
    """Renamed-into-place checkpoints, oldest first (half-written ones live under a ``.tmp-`` name)."""
    root = folder / CHECKPOINTS
    return sorted(p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()) if root.is_dir() else []


def temporary_twin(path: Path) -> Path:
    """Where to build ``path`` before renaming it into place."""
    return path.with_name(TMP_PREFIX + path.name)


def remove_stale_temporaries(folder: Path) -> None:
    """Leftovers of a killed write: never trusted, removed before a run (re)starts."""
    for root in (folder, folder / CHECKPOINTS, folder / PREDICTIONS_DIR):
        for stale in root.glob(TMP_PREFIX + "*") if root.is_dir() else ():
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints (0 keeps all)."""
    root = folder / CHECKPOINTS
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
    stock = stock_export(model) or {}  # a slim ResNet is saved as stock timm's ResNet with its widths
    model_config = dict(
        stock.get("model_config", {}), **({"label_names": label_names} if label_names else {})
    )
    export_config = {k: data_config[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct")}
    save_for_hf(
        model,
        staging,
        model_config=model_config or None,
        model_args=stock.get("model_args"),
        safe_serialization=True,
        data_config=export_config,
    )
    for name in (WEIGHTS, CONFIG):
        os.chmod(staging / name, default_file_mode())
        os.replace(staging / name, folder / name)
    shutil.rmtree(staging)
