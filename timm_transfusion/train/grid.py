"""An experiment as data: ``EXP/plan.json`` lists every cell of the grid with its run folder and full config.

Any launcher can then run any cell (``transfusion experiment run EXP --cell I | --shard I/N``), and the report
reads whatever has finished. Cell folders are stored relative to EXP, so the folder may be moved or mounted
elsewhere (a cluster's shared file system); dataset and source paths are kept as given: plan with paths
every machine can read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import TransfusionError
from ..run_folder import RUN_CONTROL_KEYS, write_json_atomic
from .config import TrainConfig
from .experiment import Cell, SkippedCell, expand_grid_with_skips

PLAN_FORMAT = "transfusion-plan/1"
PLAN_FILE = "plan.json"
# Cell configs always resume (a re-run continues a killed cell); `output` is the cell's folder under EXP.
_CELL_KEYS = frozenset({"output", "resume"})


class PlanError(TransfusionError, ValueError):
    """A plan that is missing, malformed, taken by another grid, or asked for a cell or shard it lacks."""


@dataclass(frozen=True)
class PlanCell:
    """One run of the grid as plan.json holds it: its position, name, folder (relative to EXP) and every training option."""

    index: int
    name: str
    folder: str
    config: dict

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "folder": self.folder, "config": self.config}


@dataclass(frozen=True)
class Plan:
    """The grid of an experiment folder: what produced it (``grid``), its cells in a fixed order, and the
    (model, init) pairs of its axes it left out (``skipped``: a slim model cannot take full transfer)."""

    folder: Path
    grid: dict
    cells: tuple[PlanCell, ...]
    skipped: tuple[SkippedCell, ...] = ()

    def train_config(self, cell: PlanCell) -> TrainConfig:
        """The cell's TrainConfig, its output resolved under this plan's folder."""
        return TrainConfig(**{**cell.config, "output": str(self.run_folder(cell))})

    def base_config(self) -> TrainConfig:
        """The grid's shared options, with EXP as output (the report folder)."""
        return TrainConfig(**{**self.grid["base"], "output": str(self.folder)})

    def run_folder(self, cell: PlanCell) -> Path:
        return self.folder / cell.folder

    def cell(self, key: int | str) -> PlanCell:
        """A cell by index or by name; PlanError names the valid range."""
        for cell in self.cells:
            if key in (cell.index, cell.name) or str(key) == str(cell.index):
                return cell
        raise PlanError(
            f"--cell {key!r}: {self.folder} has cells 0..{len(self.cells) - 1} "
            f"({self.cells[0].name} .. {self.cells[-1].name})"
        )

    def to_json(self) -> dict:
        return {
            "format": PLAN_FORMAT,
            "grid": self.grid,
            "cells": [c.to_json() for c in self.cells],
            "skipped": [s.to_json() for s in self.skipped],
        }


def grid_description(base: TrainConfig, axes: dict) -> dict:
    """What identifies a grid: the shared options (without its folder) and the axes (inits, seeds, ...)."""
    shared = {k: v for k, v in base.to_json().items() if k not in _CELL_KEYS}
    seeds = axes.get("seeds")
    normalized = {**axes, "seeds": list(range(seeds)) if isinstance(seeds, int) else list(seeds or [])}
    return {"base": shared, **normalized}


def build_plan(folder: str | Path, base: TrainConfig, **axes: Any) -> Plan:
    """The plan of a grid, not yet written: ``experiment.expand_grid_with_skips`` (which checks the grid)
    under ``folder``, each cell's folder and output stored relative to it, and the pairs it left out.
    ``axes``: inits, seeds, source, and whatever other axes ``expand_grid`` takes."""
    folder = Path(folder)
    expansion = expand_grid_with_skips(replace(base, output=str(folder)), **axes)
    cells = []
    for index, cell in enumerate(expansion.cells):
        relative = Path(cell.folder).relative_to(folder).as_posix()
        config = {**cell.config.to_json(), "output": relative}
        cells.append(PlanCell(index=index, name=cell.name, folder=relative, config=config))
    return Plan(
        folder=folder,
        grid=grid_description(base, axes),
        cells=tuple(cells),
        skipped=tuple(expansion.skipped),
    )


def check_plan(plan: Plan) -> None:
    """Every cell's options, run folder, data and model checked before plan.json is written (the preflight
    of ``preflight.check_cells``), so a mistake in the last cell is found before the first one trains."""
    from .preflight import check_cells

    check_cells([plan.train_config(cell) for cell in plan.cells])


def grid_cells(plan: Plan) -> list[Cell]:
    """The plan's cells as ``experiment.Cell``s (absolute folders), for ``experiment.write_report``."""
    return [Cell(c.name, plan.run_folder(c), plan.train_config(c)) for c in plan.cells]


def _identity(grid: dict) -> dict:
    """The part of a grid that decides what its cells compute (run-control options may change freely)."""
    return {**grid, "base": {k: v for k, v in grid["base"].items() if k not in RUN_CONTROL_KEYS}}


def _differences(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changes += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def write_plan(plan: Plan, *, overwrite: bool = False) -> str:
    """Write ``plan.json``; returns ``"created"``, ``"unchanged"`` (the same grid: a no-op) or ``"replaced"``.

    A folder holding the plan of a different grid raises PlanError unless ``overwrite``; then the new plan's
    cells replace any different runs in their folders (their configs carry ``overwrite``; unchanged cells
    keep their finished runs, since ``overwrite`` still resumes the same run).
    """
    path = plan.folder / PLAN_FILE
    if plan.folder.exists() and not plan.folder.is_dir():
        raise PlanError(f"--output {str(plan.folder)!r} exists and is not a folder")
    if path.is_file():
        previous = load_plan(plan.folder)
        changes = _differences(_identity(previous.grid), _identity(plan.grid))
        if not changes:
            # Only run-control options (progress, workers, ...) moved, or a plan from before `skipped`.
            if previous.grid != plan.grid or previous.skipped != plan.skipped:
                write_json_atomic(path, plan.to_json())
            return "unchanged"
        if not overwrite:
            raise PlanError(
                f"{path} holds a different grid ({'; '.join(changes)}); pass --overwrite to replace it "
                "(finished runs of unchanged cells are kept) or choose another --output"
            )
        # The replaced grid's runs may sit in folders of changed cells: those cells start over.
        cells = tuple(replace(c, config={**c.config, "overwrite": True}) for c in plan.cells)
        write_json_atomic(path, replace(plan, cells=cells).to_json())
        return "replaced"
    if plan.folder.is_dir() and any(plan.folder.iterdir()):
        raise PlanError(
            f"--output {str(plan.folder)!r} is not empty and holds no plan ({PLAN_FILE}); "
            "choose an empty or new folder"
        )
    plan.folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, plan.to_json())
    return "created"


def load_plan(folder: str | Path) -> Plan:
    """Read ``EXP/plan.json``; PlanError when it is missing or not a plan."""
    folder = Path(folder)
    path = folder / PLAN_FILE
    if not path.is_file():
        raise PlanError(
            f"{path} does not exist: write it first with `transfusion experiment plan ... --output {folder}`"
        )
    try:
        data = json.loads(path.read_text())
        if data.get("format") != PLAN_FORMAT:
            raise PlanError(f"{path}: format {data.get('format')!r}, expected {PLAN_FORMAT!r}")
        cells = tuple(PlanCell(**cell) for cell in data["cells"])
        grid = data["grid"]
        skipped = tuple(SkippedCell(**pair) for pair in data.get("skipped", []))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise PlanError(f"{path} is not a readable plan ({err})") from None
    if not cells:
        raise PlanError(f"{path} has no cells")
    return Plan(folder=folder, grid=grid, cells=cells, skipped=skipped)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (0 <= I < N) as (I, N); PlanError otherwise."""
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise PlanError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= shard[0] < shard[1]:
        raise PlanError(f"--shard {text!r}: I must be in 0..N-1")
    return shard


def shard_from_slurm(environ: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """The shard of a Slurm job array task (``--array=A-B``: task ids counted from SLURM_ARRAY_TASK_MIN)."""
    if "SLURM_ARRAY_TASK_ID" not in environ:
        return None
    try:
        task = int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(environ["SLURM_ARRAY_TASK_COUNT"])
    except (KeyError, ValueError) as err:
        raise PlanError(f"SLURM_ARRAY_TASK_ID is set but the array is not readable ({err})") from None
    return parse_shard(f"{task}/{count}")


def select_cells(
    plan: Plan, *, cell: int | str | None = None, shard: tuple[int, int] | None = None
) -> list[PlanCell]:
    """The cells a worker runs: one cell, a shard (every N-th cell from I: shards mix inits and seeds), or all."""
    if cell is not None and shard is not None:
        raise PlanError("pass --cell or --shard, not both")
    if cell is not None:
        return [plan.cell(cell)]
    if shard is not None:
        index, count = shard
        return [c for c in plan.cells if c.index % count == index]
    return list(plan.cells)
