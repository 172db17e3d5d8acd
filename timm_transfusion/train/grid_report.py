"""Where a planned grid stands, and its report from whatever has finished: ``transfusion experiment report``.

Safe to run at any time, also while workers train: it only reads run folders (a run counts once its
summary.json exists, which is written last) and writes the report files and ``status.{json,md}`` in EXP.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..files import write_text_atomic
from ..run_folder import write_json_atomic
from .cell_lock import DEFAULT_STALE_AFTER, is_stale, read_holder
from .experiment import SkippedCell, write_report
from .grid import Plan, PlanCell, grid_cells
from .run_folder import all_checkpoints
from .workers import failure_path, is_finished, lock_path, log_path

STATES = ("finished", "running", "failed", "interrupted", "missing")


@dataclass(frozen=True)
class CellState:
    """One cell's state (one of STATES) and a short detail (who runs it, why it failed, where it resumes)."""

    cell: PlanCell
    state: str
    detail: str = ""


def cell_state(plan: Plan, cell: PlanCell, *, stale_after: float = DEFAULT_STALE_AFTER) -> CellState:
    """finished (summary.json), running (a live lock), failed (its last worker saw it fail), interrupted
    (a checkpoint or a stale lock but nobody on it: the next worker resumes it), or missing (never started)."""
    if is_finished(plan, cell):
        return CellState(cell, "finished")
    holder = read_holder(lock_path(plan, cell))
    if holder is not None and not is_stale(holder, stale_after):
        return CellState(cell, "running", holder.describe())
    checkpoints = all_checkpoints(plan.run_folder(cell))
    checkpoint = checkpoints[-1] if checkpoints else None
    resumes = f"resumes from {checkpoint.name}" if checkpoint else "restarts from step 0"
    if failure_path(plan, cell).is_file():
        failure = json.loads(failure_path(plan, cell).read_text())
        log = log_path(plan, cell).relative_to(plan.folder)
        return CellState(cell, "failed", f"{failure['reason']}; log {log}; {resumes}")
    if holder is not None:
        return CellState(cell, "interrupted", f"stale lock ({holder.describe()}); {resumes}")
    if checkpoint is not None or plan.run_folder(cell).is_dir():
        return CellState(cell, "interrupted", resumes)
    return CellState(cell, "missing")


def grid_status(plan: Plan, *, stale_after: float = DEFAULT_STALE_AFTER) -> list[CellState]:
    return [cell_state(plan, cell, stale_after=stale_after) for cell in plan.cells]


def status_lines(states: list[CellState], skipped: Sequence[SkippedCell] = ()) -> list[str]:
    """Markdown: the count per state, every cell that is not finished, and the (model, init) pairs the
    plan left out."""
    counts = {state: sum(s.state == state for s in states) for state in STATES}
    lines = [
        f"{counts['finished']}/{len(states)} cells finished"
        + "".join(f", {counts[state]} {state}" for state in STATES[1:] if counts[state]),
    ]
    unfinished = [s for s in states if s.state != "finished"]
    if unfinished:
        lines += ["", "| cell | name | state | detail |", "|---:|---|---|---|"]
        lines += [f"| {s.cell.index} | {s.cell.name} | {s.state} | {s.detail} |" for s in unfinished]
    if skipped:
        lines += ["", f"Left out of the grid ({len(skipped)}: the model cannot take the init):"]
        lines += [f"- `{s.model}` × `{s.init}`: {s.reason}" for s in skipped]
    return lines


def report_grid(
    plan: Plan, *, stale_after: float = DEFAULT_STALE_AFTER, cross_init: bool = True
) -> tuple[list[CellState], dict[str, Path]]:
    """Write ``status.{json,md}`` and, when any cell has finished, the experiment report of the finished
    cells with the grid's status appended to results.md. Returns the states and the report's paths."""
    states = grid_status(plan, stale_after=stale_after)
    lines = status_lines(states, plan.skipped)
    write_json_atomic(
        plan.folder / "status.json",
        {
            "cells": [
                {"index": s.cell.index, "name": s.cell.name, "state": s.state, "detail": s.detail}
                for s in states
            ],
            "skipped": [s.to_json() for s in plan.skipped],
        },
    )
    write_text_atomic(plan.folder / "status.md", "# Grid status\n\n" + "\n".join(lines) + "\n")
    if not any(s.state == "finished" for s in states):
        return states, {}
    paths = write_report(
        plan.base_config(), grid_cells(plan), source=plan.grid["source"], cross_init=cross_init
    )
    results = paths["results.md"]
    if any(s.state != "finished" for s in states):
        note = "\n## Grid status: this report covers the finished cells only\n\n" + "\n".join(lines) + "\n"
        write_text_atomic(results, results.read_text() + note)
    return states, paths
