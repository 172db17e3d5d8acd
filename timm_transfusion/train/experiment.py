"""The paper's comparison as a grid: models × inits × learning rates × seeds on one dataset.

Two entry points that a scheduler can call separately (cells may run in other processes):
``expand_grid`` turns the axes into ``Cell``s (a name, a run folder, a full ``TrainConfig``), and
``write_report`` (``results.py``) writes the whole report from whichever cells have finished, listing the
missing ones. ``run_experiment`` does both in one process, one cell after the other (``make demo``).
Re-running the same command keeps finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..data import DatasetSpecError, load_dataset_spec
from ..init.registry import resolve_init
from ..models.slim import init_conflict
from ..source_kind import local_path, source_kind
from .config import TrainConfig, TrainConfigError
from .errors import SkippedCellWarning
from .loop import train
from .preflight import check_cells
from .results import write_report

# transfusion-* = transfusion-0 … transfusion-<blocks - 1>; reusing every block group is `pretrained`.
ALL_K = re.compile(r"^transfusion-\*(\+meanvar)?$")

__all__ = [
    "Cell",
    "GridExpansion",
    "SkippedCell",
    "check_grid",
    "expand_grid",
    "expand_grid_with_skips",
    "expand_inits",
    "init_source_for",
    "run_experiment",
    "write_report",
]


@dataclass(frozen=True)
class Cell:
    """One training of the grid: its name (unique in the grid), run folder and complete configuration."""

    name: str
    folder: Path
    config: TrainConfig

    @property
    def key(self) -> tuple[str, str, float, int]:
        """(model, init, lr, seed): the cell's coordinates on the grid's axes."""
        return self.config.model, self.config.init, self.config.lr, self.config.seed


@dataclass(frozen=True)
class SkippedCell:
    """A (model, init) pair of the grid's axes that the model cannot take, and why (``init_conflict``)."""

    model: str
    init: str
    reason: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GridExpansion:
    """The cells of a grid and the (model, init) pairs it left out."""

    cells: list[Cell]
    skipped: list[SkippedCell]


def init_source_for(init: str, source: str | None) -> str | None:
    """The source an init reads: ``source`` if the registry says it needs one, else None (the one rule)."""
    return source if resolve_init(init)[0].needs_source else None


def expand_inits(model: str, inits: list[str]) -> list[str]:
    """``transfusion-*`` (or ``transfusion-*+meanvar``) becomes one init per k = 0 … (block groups - 1): the
    sweep from the stem alone up to all but the last group; ``pretrained`` (add it to the grid) reuses all."""
    expanded: list[str] = []
    for init in inits:
        match = ALL_K.match(init)
        if match is None:
            expanded.append(init)
            continue
        import timm

        from ..init.groups import block_groups

        blocks = block_groups(timm.create_model(model, pretrained=False)).num_blocks
        expanded += [f"transfusion-{k}{match.group(1) or ''}" for k in range(blocks)]
    return list(dict.fromkeys(expanded))


def check_grid(
    inits: list[str], seeds: list[int], source: str | None, lrs: list[float] | None = None
) -> None:
    """Refuse a grid that would fail part-way: unknown inits, no seeds, bad learning rates, a missing source."""
    if not inits:
        raise TrainConfigError("--inits names no initializer; see `transfusion inits`")
    if not seeds:
        raise TrainConfigError("--seeds must be at least 1")
    bad_lrs = [lr for lr in lrs or [] if not lr > 0]
    if bad_lrs:
        raise TrainConfigError(f"--lr-grid values must be > 0, got {bad_lrs[0]}")
    for init in inits:
        resolve_init(init)
    if (
        source is not None
        and source_kind(source) in ("local-dir", "file")
        and not local_path(source).exists()
    ):
        raise TrainConfigError(f"--source {source!r} does not exist")


def _selection_split(base: TrainConfig, lrs: list[float]) -> str | None:
    """The split learning rates are chosen on; None when the dataset has none and there is nothing to choose."""
    if base.select_split is None:
        if len(lrs) > 1:
            raise TrainConfigError(
                "--lr-grid with several values needs a selection split (--select-split val)"
            )
        return None
    try:
        load_dataset_spec(base.dataset, base.select_split)
    except DatasetSpecError as err:
        if len(lrs) > 1:
            raise TrainConfigError(
                f"--lr-grid chooses the learning rate on split {base.select_split!r}, but: {err}"
            ) from None
        return None
    return base.select_split


def cell_name(model: str, init: str, lr: float, seed: int, *, models: bool, lrs: bool) -> str:
    """``meanvar-seed0``; with several learning rates ``meanvar-lr0.001-seed0``; with several models
    ``mobilenetv1_025/meanvar-seed0``."""
    name = f"{init}-lr{lr:g}-seed{seed}" if lrs else f"{init}-seed{seed}"
    return f"{model}/{name}" if models else name


def expand_grid(
    base: TrainConfig,
    *,
    inits: list[str],
    seeds: int | list[int],
    source: str | None,
    models: list[str] | None = None,
    lrs: list[float] | None = None,
) -> list[Cell]:
    """Every (model, init, lr, seed) as a Cell under ``base.output/runs``; checks the whole grid first.

    ``models`` defaults to ``[base.model]``, ``lrs`` to ``[base.lr]``; every cell keeps its per-evaluation
    predictions (for the report's bootstrap) and evaluates ``base.select_split`` at the end when the dataset
    has it. Inits a slim model cannot take are left out with a ``SkippedCellWarning``
    (``expand_grid_with_skips`` also returns them).
    """
    return expand_grid_with_skips(base, inits=inits, seeds=seeds, source=source, models=models, lrs=lrs).cells


def expand_grid_with_skips(
    base: TrainConfig,
    *,
    inits: list[str],
    seeds: int | list[int],
    source: str | None,
    models: list[str] | None = None,
    lrs: list[float] | None = None,
) -> GridExpansion:
    """``expand_grid``'s cells and the (model, init) pairs left out, each announced by one
    ``SkippedCellWarning`` (its message names the pair, so Python shows every pair once)."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    model_list, lr_list = models or [base.model], lrs or [base.lr]
    select = _selection_split(base, lr_list)
    cells, skipped = [], []
    for model in model_list:
        model_inits = expand_inits(model, inits)
        check_grid(model_inits, seed_list, source, lrs)  # --lr alone is checked with the other options
        if len(model_list) > 1:  # a slim model next to its full base takes only the inits that fit it
            left_out = [SkippedCell(model, i, r) for i in model_inits if (r := init_conflict(model, i))]
            for cell in left_out:
                warnings.warn(
                    f"experiment: skipping {cell.model} x {cell.init}: {cell.reason}",
                    SkippedCellWarning,
                    stacklevel=2,
                )
            skipped += left_out
            model_inits = [init for init in model_inits if init not in {c.init for c in left_out}]
        for init in model_inits:
            for lr in lr_list:
                for seed in seed_list:
                    name = cell_name(model, init, lr, seed, models=len(model_list) > 1, lrs=len(lr_list) > 1)
                    folder = Path(base.output) / "runs" / name
                    config = replace(
                        base,
                        model=model,
                        init=init,
                        init_source=init_source_for(init, source),
                        seed=seed,
                        init_seed=seed,
                        lr=lr,
                        select_split=select,
                        output=str(folder),
                        save_predictions=True,
                        resume=True,
                    )
                    cells.append(Cell(name, folder, config))
    return GridExpansion(cells, skipped)


def run_experiment(
    base: TrainConfig,
    *,
    inits: list[str],
    seeds: int | list[int],
    source: str | None,
    models: list[str] | None = None,
    lrs: list[float] | None = None,
) -> dict[str, Path]:
    """Train every cell in this process, one after the other, then write the report; returns its paths.

    Seed by seed (every init of seed 0 first): a grid stopped part-way still compares every init.
    """
    cells = expand_grid(base, inits=inits, seeds=seeds, source=source, models=models, lrs=lrs)
    check_cells([cell.config for cell in cells])  # the whole grid, before the first cell trains
    for cell in sorted(cells, key=lambda c: c.config.seed):
        train(cell.config)
    return write_report(base, cells, source=source)
