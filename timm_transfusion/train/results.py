"""The report of an experiment grid, written from whichever cells have finished.

``results.md`` opens with the Findings (each claim of the paper with its statistic, 95 % interval and verdict),
then per model: final test AUC and convergence by init (mean ± sd over seeds, per-seed values, intervals,
paired differences against random), the transfusion-k sweep, the learning-rate selection, how much each
layer changed. ``findings.json`` holds the findings for tools, ``results.csv`` one row per (model, init).
Plots: ``convergence.png``, ``sweep.png``, ``filters.png``, ``representations.png``.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

from ..files import read_jsonl, write_text_atomic
from ..similarity import SimilarityReport
from .analysis import InitRuns, RunData, contrast, load_run, shared_indices, threshold_metric
from .config import TrainConfig
from .convergence import threshold_key
from .findings import EQUIVALENCE_MARGIN, Finding, findings_json, findings_table, judge, training_findings
from .model import create_model
from .representations import change_table, eval_images, representation_change, write_representation_change
from .stats import RESAMPLES, summarize_seeds, t_interval

if TYPE_CHECKING:
    from .experiment import Cell

REPORT_FILES = (
    "results.md",
    "results.csv",
    "findings.json",
    "convergence.png",
    "sweep.png",
    "filters.png",
    "representations.png",
)


@dataclass
class ModelResults:
    """One model's finished runs: by init at its chosen lr, plus the lr selection table."""

    model: str
    groups: dict[str, InitRuns]
    lr_table: dict[str, dict[float, list[float | None]]]
    lr_note: dict[str, str]


def _by_key(cells: Sequence[Cell]) -> dict[str, dict[str, dict[float, dict[int, Cell]]]]:
    grid: dict = {}
    for cell in cells:
        model, init, lr, seed = cell.key
        grid.setdefault(model, {}).setdefault(init, {}).setdefault(lr, {})[seed] = cell
    return grid


def choose_lr(by_lr: dict[float, list[float | None]]) -> tuple[float, str]:
    """The lr whose mean selection-split AUC over seeds is highest (first in the grid on a tie); with one lr
    or no selection values, the first lr and a note saying so."""
    lrs = list(by_lr)
    if len(lrs) == 1:
        return lrs[0], "fixed"
    means = {lr: summarize_seeds(dict(enumerate(values))).mean for lr, values in by_lr.items()}
    scored = {lr: m for lr, m in means.items() if m is not None}
    if not scored:
        return lrs[0], "no selection AUC: first lr"
    best = max(scored.values())
    return next(lr for lr in lrs if scored.get(lr) == best), "best mean val AUC"


def collect_results(
    cells: Sequence[Cell], *, resamples: int = RESAMPLES
) -> tuple[list[ModelResults], list[Cell]]:
    """Read every finished cell; per model and init choose the lr, load the chosen runs with bootstrap
    replicates over one shared set of eval-image resamples. Returns (results per model, missing cells)."""
    finished = [c for c in cells if (c.folder / "summary.json").is_file()]
    missing = [c for c in cells if c not in finished]
    results = []
    for model, inits in _by_key(finished).items():
        plain = {
            (init, lr, seed): load_run(cell.folder)
            for init, by_lr in inits.items()
            for lr, by_seed in by_lr.items()
            for seed, cell in by_seed.items()
        }
        sizes = {run.summary["eval_samples"] for run in plain.values()}
        indices = shared_indices(sizes.pop(), resamples=resamples) if len(sizes) == 1 and resamples else None
        groups, lr_table, lr_note = {}, {}, {}
        for init, by_lr in inits.items():
            lr_table[init] = {
                lr: [plain[(init, lr, s)].select_auc for s in sorted(by_seed)]
                for lr, by_seed in by_lr.items()
            }
            lr, lr_note[init] = choose_lr(lr_table[init])
            runs = {seed: load_run(cell.folder, indices=indices) for seed, cell in sorted(by_lr[lr].items())}
            groups[init] = InitRuns(init, lr, runs)
        results.append(ModelResults(model, groups, lr_table, lr_note))
    return results, missing


def _sweep_order(groups: dict[str, InitRuns]) -> list[tuple[str, str]]:
    """(label, init) for the transfusion sweep: random (nothing reused), transfusion-0 … k, pretrained (all)."""
    ks = sorted(int(m.group(1)) for init in groups if (m := re.fullmatch(r"transfusion-(\d+)", init)))
    rows = [("nothing (random)", "random")] if "random" in groups else []
    rows += [(f"stem + {k} block groups", f"transfusion-{k}") for k in ks]
    return rows + ([("everything (pretrained)", "pretrained")] if "pretrained" in groups else [])


def _interval_cell(measured) -> str:
    if measured is None:
        return "-"
    interval = measured.interval
    if not math.isfinite(interval.low):
        return f"{interval.estimate:+.3f} [no interval]"
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def _mean_interval(group: InitRuns, metric: str) -> str:
    measured = contrast({group.init: group}, {group.init: 1.0}, metric)
    if measured is None or not math.isfinite(measured.interval.low):
        return "-"
    return f"[{measured.interval.low:.3f}, {measured.interval.high:.3f}]"


def _per_seed(group: InitRuns, metric: str, digits: int = 3) -> str:
    values = group.values(metric)
    return ", ".join("-" if v is None else f"{v:.{digits}f}" for v in values.values())


def _steps_cell(group: InitRuns, threshold: float) -> str:
    summary = group.summary(threshold_metric(threshold))
    reached = f"({summary.n}/{len(group.runs)})"
    return f"{summary.format(0)} {reached}"


def init_table(results: ModelResults, thresholds: list[float]) -> list[str]:
    """Markdown: one row per init with final AUC, area and steps to each threshold, vs random paired by seed."""
    groups = results.groups
    header = [
        "init",
        "lr",
        "seeds",
        "final test AUC (mean ± sd)",
        "95 % interval",
        "per seed",
        "Δ vs random [95 %]",
        "area (mean ± sd)",
        "Δ area vs random [95 %]",
        *[f"steps to {threshold_key(t)} (reached)" for t in thresholds],
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for init, group in groups.items():
        vs_random = init != "random" and "random" in groups
        cells = [
            init,
            f"{group.lr:g}",
            str(len(group.runs)),
            group.summary("final_auc").format(),
            _mean_interval(group, "final_auc"),
            _per_seed(group, "final_auc"),
            _interval_cell(contrast(groups, {init: 1.0, "random": -1.0}, "final_auc")) if vs_random else "",
            group.summary("area").format(),
            _interval_cell(contrast(groups, {init: 1.0, "random": -1.0}, "area")) if vs_random else "",
            *[_steps_cell(group, t) for t in thresholds],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sweep_table(results: ModelResults, thresholds: list[float]) -> list[str]:
    """Markdown: area and steps to each threshold against how many block groups were reused."""
    rows = _sweep_order(results.groups)
    if len(rows) < 3:
        return []
    groups = results.groups
    header = ["reused from the source", "init", "area (mean ± sd)", "Δ area vs random [95 %]"]
    header += [f"steps to {threshold_key(t)} (reached)" for t in thresholds]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, init in rows:
        delta = contrast(groups, {init: 1.0, "random": -1.0}, "area") if init != "random" else None
        cells = [label, init, groups[init].summary("area").format(), _interval_cell(delta)]
        cells += [_steps_cell(groups[init], t) for t in thresholds]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def lr_table(results: ModelResults) -> list[str]:
    """Markdown: mean selection-split AUC per init and lr, and which lr each init got."""
    lrs = sorted({lr for table in results.lr_table.values() for lr in table})
    if len(lrs) < 2:
        return []
    lines = [
        "| init | " + " | ".join(f"val AUC @ lr {lr:g}" for lr in lrs) + " | chosen lr |",
        "|---|" + "---|" * (len(lrs) + 1),
    ]
    for init, table in results.lr_table.items():
        cells = [summarize_seeds(dict(enumerate(table[lr]))).format() if lr in table else "-" for lr in lrs]
        lines.append(
            f"| {init} | " + " | ".join(cells) + f" | {results.groups[init].lr:g} ({results.lr_note[init]}) |"
        )
    return lines


def results_rows(results: list[ModelResults], thresholds: list[float]) -> list[dict]:
    """results.csv: one row per (model, init), every figure with its spread and per-seed values."""
    rows = []
    for result in results:
        for init, group in result.groups.items():
            row = {"model": result.model, "init": init, "lr": group.lr, "seeds": len(group.runs)}
            metrics = ["final_auc", "area", *[threshold_metric(t) for t in thresholds]]
            for metric in metrics:
                summary = group.summary(metric)
                row[f"{metric}_mean"], row[f"{metric}_sd"], row[f"{metric}_n"] = (
                    summary.mean,
                    summary.sd,
                    summary.n,
                )
                row[f"{metric}_per_seed"] = json.dumps(list(summary.values.values()))
            for metric in ("final_auc", "area"):
                measured = contrast(result.groups, {init: 1.0, "random": -1.0}, metric)
                ok = measured is not None and init != "random"
                row[f"{metric}_vs_random"] = measured.interval.estimate if ok else None
                row[f"{metric}_vs_random_low"] = measured.interval.low if ok else None
                row[f"{metric}_vs_random_high"] = measured.interval.high if ok else None
            rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    write_text_atomic(path, buffer.getvalue())


def initial_and_final(run: RunData, base: TrainConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A run's model at its init (rebuilt from its train_args, so identical) and its trained model."""
    args = json.loads((run.folder / "train_args.json").read_text())
    config = replace(
        base, **{k: args[k] for k in ("model", "init", "init_source", "seed", "init_seed") if k in args}
    )
    before = create_model(config, run.summary["num_classes"])
    after = copy.deepcopy(before)
    after.load_state_dict(load_file(run.folder / "model.safetensors"))
    return before, after


def layer_change_finding(changes: dict[int, SimilarityReport]) -> Finding:
    """Lower layers change least: PWCCA (init vs fine-tuned) of the lowest minus the highest defined layer,
    per seed of the pretrained runs, with a t interval over seeds."""
    per_seed = {}
    for seed, report in changes.items():
        defined = [v for v in report.column("pwcca") if v is not None]
        if len(defined) >= 2:
            per_seed[seed] = defined[0] - defined[-1]
    interval = t_interval(list(per_seed.values()))
    finding = judge(
        "Lower layers change least in fine-tuning (from pretrained weights)",
        "PWCCA(init, fine-tuned): lowest − highest layer with a defined value, pretrained runs",
        interval,
        "greater",
        missing=f"{len(per_seed)} seed(s) with two defined layers; a t interval needs 2",
    )
    return replace(finding, per_seed=per_seed)


def _not_measured(claim: str, statistic: str, kind: str, reason: str) -> Finding:
    return judge(
        claim,
        statistic,
        None,
        kind,
        margin=EQUIVALENCE_MARGIN if kind == "equivalent" else 0.0,
        missing=reason,
    )


def representation_effects(
    base: TrainConfig, result: ModelResults
) -> tuple[dict, dict[str, SimilarityReport], dict[int, SimilarityReport]]:
    """First-layer filters (before, after) of every run (``filters[init][seed]``, for the Gabor finding over
    seeds), layer change per init (first seed), and the pretrained runs' layer change for every seed (the
    claim's statistic)."""
    from ..viz.filters import first_conv_weight

    filters, changes, pretrained_changes, images = {}, {}, {}, None
    with torch.random.fork_rng(devices=[]):  # rebuilding the inits must not move the caller's RNG
        for init, group in result.groups.items():
            for seed, run in group.runs.items():
                first = seed == min(group.runs)
                before, after = initial_and_final(run, replace(base, model=result.model))
                filters.setdefault(init, {})[seed] = (first_conv_weight(before), first_conv_weight(after))
                if not first and init != "pretrained":
                    continue
                if images is None:
                    images = eval_images(
                        base.dataset, before, split=base.eval_split, img_size=run.summary["img_size"]
                    )
                report = representation_change(before, after, *images, init)
                if first:
                    changes[init] = report
                if init == "pretrained":
                    pretrained_changes[seed] = report
    return filters, changes, pretrained_changes


def _setup_lines(
    base: TrainConfig, source: str | None, result: ModelResults, missing: list[Cell]
) -> list[str]:
    run = next(iter(next(iter(result.groups.values())).runs.values()))
    steps = ", ".join(str(int(s)) for s in run.steps)
    with_replicates = all(r.replicates is not None for g in result.groups.values() for r in g.runs.values())
    lines = [
        f"Source weights: `{source}`. Steps: {base.max_steps} (batch {base.batch_size}, optimizer {base.opt}, "
        f"{base.sched} schedule). Evaluated at steps {steps} on split `{base.eval_split}` "
        f"({run.summary['eval_samples']} images); learning rates chosen on `{base.select_split or 'none'}`.",
        "Intervals are 95 %: "
        + (
            "per-init and paired intervals combine a t interval over seeds with a bootstrap over the eval images "
            f"({RESAMPLES} resamples shared by every run, so differences are paired by seed and by image)."
            if with_replicates
            else "t intervals over seeds (some runs kept no per-image predictions, so no bootstrap over images)."
        ),
        "Area: the area under test AUC against log(step), divided by the log-range (a mean AUC in which every "
        "doubling of the steps weighs the same). Steps to a threshold: interpolated between the two evaluations "
        "around the first crossing; mean ± sd over the seeds that reached it (reached/total).",
    ]
    if missing:
        lines.append(f"**Missing runs ({len(missing)}):** " + ", ".join(f"`{c.name}`" for c in missing))
    return lines + [""]


@dataclass
class Effects:
    """What the analyses that rebuild models produced for one model's runs (empty when skipped)."""

    filters: dict = field(default_factory=dict)
    changes: dict[str, SimilarityReport] = field(default_factory=dict)
    gabor: dict | None = None
    sections: list[str] = field(default_factory=list)


def _findings_and_analyses(
    base: TrainConfig,
    source: str | None,
    result: ModelResults,
    folder: Path,
    suffix: str,
    analyses: bool,
    margin: float,
    cross_init: bool = True,
) -> tuple[list[Finding], Effects]:
    """Every claim's finding for one model, in the paper's order, and the analyses' sections and files."""
    from .paper_analyses import (
        CROSS_CLAIM,
        CROSS_STATISTIC,
        GABOR_CLAIM,
        GABOR_STATISTIC,
        SIMILARITY_MARGIN,
        cross_init_section,
        gabor_section,
        weight_scale_section,
    )

    findings = training_findings(result.groups, margin=margin)
    layer_claim = "Lower layers change least in fine-tuning (from pretrained weights)"
    if not (analyses and "pretrained" in result.groups):
        reason = "no pretrained runs" if analyses else "analyses skipped"
        findings.append(
            _not_measured(layer_claim, "PWCCA(init, fine-tuned): lowest − highest layer", "greater", reason)
        )
        findings.append(
            judge(CROSS_CLAIM, CROSS_STATISTIC, None, "equivalent", margin=SIMILARITY_MARGIN, missing=reason)
        )
        findings.append(_not_measured(GABOR_CLAIM, GABOR_STATISTIC, "greater", reason))
        return findings, Effects()
    effects = Effects()
    effects.filters, effects.changes, pretrained_changes = representation_effects(base, result)
    write_representation_change(folder, effects.changes, name=f"representations{suffix}")
    findings.append(layer_change_finding(pretrained_changes))
    if cross_init:
        cross_lines, cross_finding = cross_init_section(
            result.groups,
            dataset=base.dataset,
            split=base.eval_split,
            folder=folder,
            name=f"cross_init{suffix}",
        )
    else:
        cross_lines = []
        cross_finding = judge(
            CROSS_CLAIM,
            CROSS_STATISTIC,
            None,
            "equivalent",
            margin=SIMILARITY_MARGIN,
            missing="skipped (--no-cross-init)",
        )
    findings.append(cross_finding)
    gabor_lines, gabor_finding, effects.gabor = gabor_section(
        effects.filters, folder=folder, name=f"gabor{suffix}"
    )
    findings.append(gabor_finding)
    heading = (
        (lambda text: f"## {result.model}: {text}")
        if suffix
        else (lambda text: f"## {text[0].upper()}{text[1:]}")
    )
    if cross_lines:
        effects.sections += [
            heading("pretrained vs random after fine-tuning, against the seed baseline"),
            "",
            *cross_lines,
        ]
    effects.sections += [heading("first-layer filters: Gabor-likeness"), "", *gabor_lines]
    if source is not None:
        run = next(iter(result.groups["pretrained"].runs.values()))
        import timm

        model = timm.create_model(result.model, num_classes=run.summary["num_classes"])
        effects.sections += [
            heading("weight scale: source vs timm's random init vs Mean Var vs rescaled"),
            "",
            *weight_scale_section(model, source, folder=folder, name=f"weight_scale{suffix}"),
        ]
    return findings, effects


def write_report(
    base: TrainConfig,
    cells: Sequence[Cell],
    *,
    source: str | None,
    resamples: int = RESAMPLES,
    margin: float = EQUIVALENCE_MARGIN,
    analyses: bool = True,
    cross_init: bool = True,
) -> dict[str, Path]:
    """Write the report of every finished cell into ``base.output`` (main process only); returns the paths.

    ``analyses=False`` skips what rebuilds models (filters, layer change): the tables and findings only;
    ``cross_init=False`` skips only pretrained vs random against the seed baseline (the slowest on a CPU).
    """
    from accelerate import PartialState

    folder = Path(base.output)
    paths = {name: folder / name for name in REPORT_FILES}
    if not PartialState().is_main_process:
        PartialState().wait_for_everyone()
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    results, missing = collect_results(cells, resamples=resamples)
    title = (
        f"# Transfusion experiment: {', '.join(r.model for r in results) or base.model} on `{base.dataset}`"
    )
    lines, findings_lines, all_findings, body = [title, ""], [], [], []
    for result in results:
        heading = f"### {result.model}" if len(results) > 1 else ""
        suffix = f"-{result.model}" if len(results) > 1 else ""
        findings, effects = _findings_and_analyses(
            base, source, result, folder, suffix, analyses, margin, cross_init
        )
        all_findings += [
            replace(f, claim=f"{result.model}: {f.claim}") if len(results) > 1 else f for f in findings
        ]
        findings_lines += ([heading, ""] if heading else []) + findings_table(findings)
        body += _model_sections(base, source, result, missing, folder, suffix, effects, len(results) > 1)
    lines += ["## Findings", ""]
    if not results:
        lines += ["No run of the grid has finished yet.", ""]
    lines += findings_lines + body
    write_text_atomic(paths["results.md"], "\n".join(lines))
    _write_csv(paths["results.csv"], results_rows(results, base.auc_thresholds))
    context = {
        "dataset": base.dataset,
        "models": [r.model for r in results],
        "eval_split": base.eval_split,
        "select_split": base.select_split,
        "equivalence_margin": margin,
        "missing_runs": [c.name for c in missing],
    }
    write_text_atomic(paths["findings.json"], findings_json(all_findings, **context))
    PartialState().wait_for_everyone()
    return paths


def _model_sections(
    base: TrainConfig,
    source: str | None,
    result: ModelResults,
    missing: list[Cell],
    folder: Path,
    suffix: str,
    effects: Effects,
    several: bool,
) -> list[str]:
    from ..viz.convergence import plot_convergence
    from ..viz.filters import plot_filters
    from ..viz.sweep import plot_sweep

    def heading(text: str) -> str:
        return f"## {result.model}: {text}" if several else f"## {text[0].upper()}{text[1:]}"

    lines = [
        heading("final AUC and convergence by init"),
        "",
        *_setup_lines(base, source, result, [c for c in missing if c.config.model == result.model]),
        *init_table(result, base.auc_thresholds),
        "",
        f"![convergence](convergence{suffix}.png)",
        "",
    ]
    curves = {
        init: [read_jsonl(run.folder / "metrics.jsonl") for run in group.runs.values()]
        for init, group in result.groups.items()
    }
    title = f"{result.model} on {base.dataset}"
    plot_convergence(curves, folder / f"convergence{suffix}.png", thresholds=base.auc_thresholds, title=title)
    sweep = sweep_table(result, base.auc_thresholds)
    if sweep:
        order = _sweep_order(result.groups)
        plot_sweep(
            {init: result.groups[init].values("area") for _, init in order},
            {init: result.groups[init].values(threshold_metric(base.auc_thresholds[0])) for _, init in order}
            if base.auc_thresholds
            else {},
            folder / f"sweep{suffix}.png",
            threshold=base.auc_thresholds[0] if base.auc_thresholds else None,
            title=f"Transfusion sweep: {title}",
        )
        lines += [
            heading("the transfusion sweep (reuse the stem and the first k block groups)"),
            "",
            *sweep,
            "",
            f"![transfusion sweep](sweep{suffix}.png)",
            "",
        ]
    lrs = lr_table(result)
    if lrs:
        lines += [
            heading(
                f"learning rate per init (chosen on `{base.select_split}`, reported on `{base.eval_split}`)"
            ),
            "",
            *lrs,
            "",
        ]
    filters, changes = effects.filters, effects.changes
    if filters:
        first = {init: min(by_seed) for init, by_seed in filters.items()}  # the picture shows one seed
        seeds = set(first.values())
        gabor = effects.gabor or {}
        plot_filters(
            {init: filters[init][seed] for init, seed in first.items()},
            folder / f"filters{suffix}.png",
            title=f"First-layer filters, {result.model} "
            + (f"(seed {seeds.pop()})" if len(seeds) == 1 else "(first seed of each init)"),
            scores={init: gabor[init][seed] for init, seed in first.items() if init in gabor},
        )
        lines += [f"![first-layer filters](filters{suffix}.png)", ""]
    if changes:
        lines += [
            heading("how much fine-tuning changed each layer"),
            "",
            "PWCCA of each layer at its init against the fine-tuned model (first seed; 1 = unchanged, "
            "n/a: fewer datapoints than features). `representations.csv` adds linear CKA.",
            "",
            *change_table(changes),
            "",
            f"![representation change](representations{suffix}.png)",
            "",
        ]
    return lines + effects.sections
