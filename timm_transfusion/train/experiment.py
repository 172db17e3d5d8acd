"""The paper's comparison: a grid of inits x seeds on one dataset, summarized as tables and plots.

Writes ``results.csv`` / ``results.md`` (final AUC mean ± std per init, steps to each AUC threshold, speed-up
relative to random, how much each layer changed), ``convergence.png``, ``filters.png`` and
``representations.{png,csv,json}`` next to ``runs/<init>-seed<k>/`` run folders.
Re-running the same command keeps finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import copy
import csv
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..files import read_jsonl, write_text_atomic
from ..init.registry import resolve_init
from ..similarity import SimilarityReport
from ..source_kind import local_path, source_kind
from .config import TrainConfig, TrainConfigError
from .convergence import threshold_key
from .loop import train
from .model import create_model
from .preflight import check_cells
from .representations import change_table, eval_images, representation_change, write_representation_change

REPORT_FILES = ("results.md", "results.csv", "convergence.png", "filters.png", "representations.png")


def run_name(init: str, seed: int) -> str:
    return f"{init}-seed{seed}"


def check_grid(inits: list[str], seeds: list[int], source: str | None) -> None:
    """Refuse a grid that would fail part-way: unknown inits, no seeds, a source file that does not exist."""
    if not inits:
        raise TrainConfigError("--inits names no initializer; see `transfusion inits`")
    if not seeds:
        raise TrainConfigError("--seeds must be at least 1")
    for init in inits:
        resolve_init(init)
    if source is None or source_kind(source) in ("hf-hub", "timm"):
        return
    if not local_path(source).exists():
        raise TrainConfigError(f"--source {source!r} does not exist")


@dataclass(frozen=True)
class Cell:
    """One training of the grid: its name (unique in the grid), run folder and complete configuration."""

    name: str
    folder: Path
    config: TrainConfig


def expand_grid(
    base: TrainConfig, *, inits: list[str], seeds: int | list[int], source: str | None
) -> list[Cell]:
    """Every (init, seed) as a Cell under ``base.output/runs``, in training order; checks the grid first."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    check_grid(inits, seed_list, source)
    cells = []
    for init in inits:
        for seed in seed_list:
            folder = Path(base.output) / "runs" / run_name(init, seed)
            config = replace(
                base,
                init=init,
                init_source=source if resolve_init(init)[0].needs_source else None,
                seed=seed,
                init_seed=seed,
                output=str(folder),
                resume=True,
            )
            cells.append(Cell(run_name(init, seed), folder, config))
    return cells


def _mean_steps(values: list[int | None]) -> float | None:
    reached = [v for v in values if v is not None]
    return float(np.mean(reached)) if reached else None


def results_table(summaries: dict[str, list[dict]], thresholds: list[float]) -> list[dict]:
    """One row per init: final AUC mean/std, and per threshold the mean steps (over seeds that reached it),
    how many seeds reached it, and the speed-up random_steps / init_steps (only where every seed of both
    reached the threshold: a mean over the lucky seeds would flatter the slower init)."""
    keys = [threshold_key(t) for t in thresholds]

    def all_reached_mean(runs: list[dict], key: str) -> float | None:
        values = [s["steps_to_threshold"].get(key) for s in runs]
        return _mean_steps(values) if all(v is not None for v in values) else None

    random_steps = {
        k: all_reached_mean(summaries["random"], k) if "random" in summaries else None for k in keys
    }
    rows = []
    for init, runs in summaries.items():
        aucs = [s["final"]["auc"] for s in runs]
        row = {
            "init": init,
            "seeds": len(runs),
            "auc_mean": float(np.mean(aucs)),
            "auc_std": float(np.std(aucs)),
        }
        for k in keys:
            values = [s["steps_to_threshold"].get(k) for s in runs]
            steps = _mean_steps(values)
            row[f"steps_to_{k}"] = steps
            row[f"reached_{k}"] = sum(v is not None for v in values)
            complete = all_reached_mean(runs, k)
            row[f"speedup_{k}"] = random_steps[k] / complete if complete and random_steps[k] else None
        rows.append(row)
    return rows


def _cell(value: object, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_results(
    folder: Path,
    summaries: dict[str, list[dict]],
    thresholds: list[float],
    *,
    base: TrainConfig,
    source: str | None,
    changes: dict[str, SimilarityReport] | None = None,
) -> list[dict]:
    """``results.csv`` (machine-readable) and ``results.md`` (the tables a reader wants; with ``changes``,
    how much each layer moved during fine-tuning per init)."""
    rows = results_table(summaries, thresholds)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(folder / "results.csv", buffer.getvalue())

    keys = [threshold_key(t) for t in thresholds]
    header = (
        ["init", "final AUC (mean ± std)"]
        + [f"steps to AUC {k}" for k in keys]
        + [f"speed-up @{k}" for k in keys]
    )
    lines = [
        f"# Transfusion experiment: {base.model} on `{base.dataset}`",
        "",
        f"Source weights: `{source}`. Seeds per init: {rows[0]['seeds']}. Steps: {base.max_steps} "
        f"(batch {base.batch_size}, evaluation every {base.eval_every} steps on split `{base.eval_split}`).",
        "Steps to a threshold: mean over the seeds that reached it (reached/total in brackets); "
        "speed-up: random's steps / this init's steps (shown when every seed of both reached the threshold).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [row["init"], f"{row['auc_mean']:.4f} ± {row['auc_std']:.4f}"]
        cells += [f"{_cell(row[f'steps_to_{k}'])} ({row[f'reached_{k}']}/{row['seeds']})" for k in keys]
        cells += [_cell(row[f"speedup_{k}"], 2) + ("x" if row[f"speedup_{k}"] else "") for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "![convergence](convergence.png)", "", "![first-layer filters](filters.png)", ""]
    if changes:
        lines += [
            "## How much fine-tuning changed each layer",
            "",
            "PWCCA of each layer at its init against the fine-tuned model (first seed; 1 = unchanged, "
            "n/a: fewer datapoints than features). `representations.csv` adds linear CKA.",
            "",
            *change_table(changes),
            "",
            "![representation change](representations.png)",
            "",
        ]
    write_text_atomic(folder / "results.md", "\n".join(lines))
    return rows


def initial_and_final(
    base: TrainConfig, init: str, seed: int, source: str | None
) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """One run's model at its init (rebuilt from its seed, so identical), its trained model, and its summary."""
    folder = Path(base.output) / "runs" / run_name(init, seed)
    summary = json.loads((folder / "summary.json").read_text())
    config = replace(
        base, init=init, init_source=None if init == "random" else source, seed=seed, init_seed=seed
    )
    before = create_model(config, summary["num_classes"])
    after = copy.deepcopy(before)
    after.load_state_dict(load_file(folder / "model.safetensors"))
    return before, after, summary


def init_effects(
    base: TrainConfig, inits: list[str], seed: int, source: str | None
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, SimilarityReport]]:
    """For one seed, per init: first-layer weights (before, after) and how much each layer changed."""
    from ..viz.filters import first_conv_weight

    filters, changes, images = {}, {}, None
    for init in inits:
        before, after, summary = initial_and_final(base, init, seed, source)
        filters[init] = (first_conv_weight(before), first_conv_weight(after))
        if images is None:  # one architecture and image size for the whole grid: load the images once
            images = eval_images(base.dataset, before, split=base.eval_split, img_size=summary["img_size"])
        changes[init] = representation_change(before, after, *images, init)
    return filters, changes


def write_report(base: TrainConfig, cells: list[Cell], *, source: str | None) -> dict[str, Path]:
    """The report of the finished ``cells`` (summary.json present; a grid in progress may lack some) into
    ``base.output``: results.md/.csv, convergence.png, and for the inits whose first seed has finished,
    filters.png and representations.*. Returns the report's paths."""
    from ..viz.convergence import plot_convergence
    from ..viz.filters import plot_filters

    folder = Path(base.output)
    finished = [c for c in cells if (c.folder / "summary.json").is_file()]
    summaries: dict[str, dict[int, dict]] = {}
    for cell in finished:
        summary = json.loads((cell.folder / "summary.json").read_text())
        summaries.setdefault(cell.config.init, {})[cell.config.seed] = summary
    if not summaries:
        return {}
    inits = list(summaries)
    first_seed = min(seed for runs in summaries.values() for seed in runs)
    complete = [init for init in inits if first_seed in summaries[init]]
    with torch.random.fork_rng(devices=[]):  # rebuilding the inits must not move the caller's RNG
        filters, changes = init_effects(base, complete, first_seed, source)
    write_representation_change(folder, changes)
    grouped = {init: [summaries[init][seed] for seed in sorted(summaries[init])] for init in inits}
    write_results(folder, grouped, base.auc_thresholds, base=base, source=source, changes=changes)
    curves = {
        init: [
            read_jsonl(folder / "runs" / run_name(init, s) / "metrics.jsonl") for s in sorted(summaries[init])
        ]
        for init in inits
    }
    title = f"{base.model} on {base.dataset}"
    plot_convergence(curves, folder / "convergence.png", thresholds=base.auc_thresholds, title=title)
    plot_filters(
        filters, folder / "filters.png", title=f"First-layer filters, {base.model} (seed {first_seed})"
    )
    return report_paths(folder)


def report_paths(folder: Path) -> dict[str, Path]:
    return {name: folder / name for name in REPORT_FILES}


def run_experiment(
    base: TrainConfig, *, inits: list[str], seeds: int | list[int], source: str | None
) -> dict[str, Path]:
    """Train every cell in this process, one after the other, then write the report; returns its paths.
    (``transfusion experiment`` runs each cell in its own process instead: ``grid.py``, ``workers.py``.)"""
    from accelerate import PartialState

    cells = expand_grid(base, inits=inits, seeds=seeds, source=source)
    check_cells([cell.config for cell in cells])  # the whole grid, before the first cell trains
    for cell in cells:
        train(cell.config)
    if PartialState().is_main_process:
        write_report(base, cells, source=source)
    PartialState().wait_for_everyone()
    return report_paths(Path(base.output))
