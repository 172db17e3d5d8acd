"""Read a run folder (the training contract) into one object the card and the push can use."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import read_jsonl

WEIGHT_FILES = ("config.json", "model.safetensors")


class RunFolderError(ValueError):
    """The folder is not a run folder: a file the contract requires is missing or unreadable."""


@dataclass
class RunFolder:
    """A training run: ``config.json`` + ``model.safetensors`` (timm ``save_for_hf``), ``summary.json``,
    ``metrics.jsonl`` and optionally ``train_args.json`` and plots (``convergence.png``, ``filters.png``)."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    train_args: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return self.config["architecture"]

    def file(self, name: str) -> Path | None:
        """``path / name`` if that file exists."""
        candidate = self.path / name
        return candidate if candidate.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{path} is not valid JSON: {err}") from err


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-empty line."""
    try:
        return read_jsonl(path)
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{path} is not valid JSON lines: {err}") from err


def load_run_folder(path: str | Path) -> RunFolder:
    """Read ``path``; raises :class:`RunFolderError` naming the missing file when it is not a run folder."""
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"run folder {str(path)!r} does not exist or is not a directory")
    missing = [name for name in WEIGHT_FILES if not (path / name).is_file()]
    if missing:
        raise RunFolderError(
            f"{str(path)!r} is not a run folder: missing {', '.join(missing)} "
            "(expected the files timm.models.save_for_hf(model, dir, safe_serialization=True) writes)"
        )
    run = RunFolder(path=path, config=_read_json(path / "config.json"))
    if (path / "summary.json").is_file():
        run.summary = _read_json(path / "summary.json")
    if (path / "metrics.jsonl").is_file():
        run.metrics = read_metrics(path / "metrics.jsonl")
    if (path / "train_args.json").is_file():
        run.train_args = _read_json(path / "train_args.json")
    return run
