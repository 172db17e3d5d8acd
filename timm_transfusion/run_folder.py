"""The run folder: the contract between training, similarity, model cards and the Hub.

Training writes it through this module and every reader reads it through this module; it imports nothing
heavier than the standard library, so reading a run never loads accelerate or datasets.

```
config.json, model.safetensors   timm ``save_for_hf`` (stock ``timm.create_model("local-dir:RUN")`` loads it)
train_args.json                  the TrainConfig (written first: marks the folder as a run)
metrics.jsonl                    one evaluation per line (step, epoch, train_loss, lr, loss, auc, ...)
eval_predictions.npz             index, scores, labels of the last evaluation (optional)
eval_predictions/step_NNNNNNNN.npz  the same for every evaluation (experiments bootstrap over them)
summary.json                     written last: its presence marks a complete run
checkpoints/step_NNNNNNNN/       accelerate ``save_state`` (half-written ones under a ``.tmp-`` name)
```
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TransfusionError
from .files import read_jsonl, write_text_atomic

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TRAIN_ARGS = "train_args.json"
METRICS = "metrics.jsonl"
PREDICTIONS = "eval_predictions.npz"
PREDICTIONS_DIR = "eval_predictions"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
CHECKPOINT_PREFIX = "step_"
WEIGHT_FILES = (CONFIG, WEIGHTS)

# metrics.jsonl fields that measure time, not training: they differ between otherwise identical runs.
TIMING_FIELDS = ("elapsed_s", "train_images_per_s")

# Options that may change between a run and its resumption without making it a different run.
RUN_CONTROL_KEYS = frozenset(
    {
        "resume",
        "overwrite",
        "output",
        "progress",
        "log_with",
        "workers",
        "channels_last",
        "compile",
        "save_predictions",
        "checkpoint_every",
        "keep_checkpoints",
    }
)


class RunFolderError(TransfusionError, ValueError):
    """The folder is not a run folder: a file the contract requires is missing or unreadable."""


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
    """Strict JSON (NaN as null), sorted keys, written atomically."""
    write_text_atomic(path, json.dumps(_finite(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_jsonl_atomic(path: Path, records: list[dict]) -> None:
    """One strict JSON object per line, written atomically."""
    lines = (json.dumps(_finite(r), sort_keys=True, allow_nan=False) + "\n" for r in records)
    write_text_atomic(path, "".join(lines))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file of the run; `RunFolderError` naming the file when it is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{path} is not valid JSON: {err}") from err


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl: one JSON object per non-empty line."""
    try:
        return read_jsonl(path)
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{path} is not valid JSON lines: {err}") from err


@dataclass
class RunFolder:
    """A training run as read back: timm config, summary, metrics and training arguments."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    train_args: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return self.config["architecture"]

    @property
    def complete(self) -> bool:
        """Whether training finished (summary.json is written last)."""
        return bool(self.summary)

    def file(self, name: str) -> Path | None:
        """``path / name`` if that file exists."""
        candidate = self.path / name
        return candidate if candidate.is_file() else None


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
    run = RunFolder(path=path, config=read_json(path / CONFIG))
    if (path / SUMMARY).is_file():
        run.summary = read_json(path / SUMMARY)
    if (path / METRICS).is_file():
        run.metrics = read_metrics(path / METRICS)
    if (path / TRAIN_ARGS).is_file():
        run.train_args = read_json(path / TRAIN_ARGS)
    return run
