"""The `transfusion` command: a thin layer that parses arguments and calls the library.

Exit codes, the same for every subcommand: 0 success; 2 a user error (bad arguments, or any
`TransfusionError`: one line on stderr saying what to change; every option is checked before anything
is written, see `cli_checks`); 130 Ctrl-C (train says at which step and how to resume); 1 a fault said in
one line (no intact checkpoint to resume, a pull request with nothing to review) or anything else (a
traceback: a bug or an environment failure such as CUDA out of memory, never dressed up as a user error). `--help` and `inits` load
neither accelerate, datasets nor evaluate.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from timm_transfusion.train.grid import Plan, PlanCell


def _run_inits(args: argparse.Namespace) -> int:
    from timm_transfusion import list_inits

    for name, description in list_inits().items():
        print(f"{name:24s} {description}")
    return 0


def _add_inits(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inits", help="list the registered initializers")
    parser.set_defaults(handler=_run_inits)


def _run_models(args: argparse.Namespace) -> int:
    import torch

    from timm_transfusion.models.costs import costs_table, model_costs
    from timm_transfusion.models.origin import plugin_models
    from timm_transfusion.models.slim import SLIM_VARIANTS

    names = args.models.split(",") if args.models else plugin_models()
    unknown = [name for name in names if not _is_model(name)]
    if unknown:
        print(
            f"transfusion models: error: unknown model {unknown[0]!r}; see timm.list_models()",
            file=sys.stderr,
        )
        return 2
    if not args.costs:
        for name in names:
            spec = SLIM_VARIANTS.get(name)
            detail = f"slim: {spec.base}, reuse {spec.reuse}, width {spec.width:g}" if spec else ""
            print(f"{name:28s} {detail}".rstrip())
        return 0
    torch.set_num_threads(args.threads)
    options = dict(batch_size=args.batch_size, rounds=args.rounds)
    costs = [
        model_costs(name, img_size=args.img_size, measure=not args.no_measure, **options) for name in names
    ]
    print(costs_table(costs))
    return 0


def _is_model(name: str) -> bool:
    import timm

    import timm_transfusion  # noqa: F401  (registers the plugin's models)

    return timm.is_model(name)


def _add_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list the plugin's models; --costs: params, GMACs, images/s"
    )
    parser.add_argument("--models", help="comma-separated timm names (default: every plugin model)")
    parser.add_argument("--costs", action="store_true", help="print a cost table (markdown)")
    parser.add_argument("--img-size", type=int, default=224, help="input size for GMACs and images/s")
    parser.add_argument("--no-measure", action="store_true", help="count only; do not time images/s")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size for timing (default 8)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per model (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for timing (default 1)")
    parser.set_defaults(handler=_run_models)


def _run_card(args: argparse.Namespace) -> int:
    from timm_transfusion.cli_checks import check_publish
    from timm_transfusion.hub import write_card

    check_publish(args)
    path = write_card(
        args.run_dir,
        similarity=args.similarity,
        experiment=args.experiment,
        repo_id=args.repo_id,
        license=args.license,
        force=args.force,
    )
    print(f"wrote {path}")
    return 0


def _add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="accept a similarity report whose model A is not this run"
    )


def _add_card(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("card", help="render a run's model card into RUN_DIR/README.md (preview)")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by training")
    parser.add_argument("--similarity", metavar="DIR", help="similarity report (`transfusion cca --out DIR`)")
    parser.add_argument("--experiment", metavar="DIR", help="experiment folder the run belongs to")
    parser.add_argument("--repo-id", metavar="USER/REPO", help="repo named in the card's usage snippet")
    parser.add_argument("--license", default="apache-2.0", help="license of the weights (default apache-2.0)")
    _add_force(parser)
    parser.set_defaults(handler=_run_card)


def _run_push(args: argparse.Namespace) -> int:
    from timm_transfusion.cli_checks import check_publish
    from timm_transfusion.hub import NothingToPushError, push_to_hub

    check_publish(args)
    try:
        result = push_to_hub(
            args.run_dir,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            create_pr=args.create_pr,
            token=args.token,
            commit_message=args.message,
            similarity=args.similarity,
            experiment=args.experiment,
            license=args.license,
            force=args.force,
        )
    except NothingToPushError as err:  # not a mistake, but no pull request either: say so, exit 1
        print(f"transfusion push: {err}", file=sys.stderr)
        return 1
    print(result.pr_url or result.commit_url)
    return 0


def _add_push(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("push", help="push a run (weights, card, reports) to the Hub, one commit")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by training")
    parser.add_argument("repo_id", metavar="USER/REPO", help="Hub repo, created if missing")
    parser.add_argument("--private", action="store_true", help="create the repo private (new repos only)")
    parser.add_argument("--revision", metavar="BRANCH", help="branch to push to (created from main if new)")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN, then `hf auth login`)")
    parser.add_argument("--message", metavar="TEXT", help="commit message")
    parser.add_argument("--similarity", metavar="DIR", help="similarity report (`transfusion cca --out DIR`)")
    parser.add_argument("--experiment", metavar="DIR", help="experiment folder the run belongs to")
    parser.add_argument("--license", default="apache-2.0", help="license of the weights (default apache-2.0)")
    _add_force(parser)
    parser.set_defaults(handler=_run_push)


def _run_cca(args: argparse.Namespace) -> int:
    from timm_transfusion.cli_checks import check_cca
    from timm_transfusion.similarity.pipeline import compare_sources
    from timm_transfusion.similarity.report import REPORT_FILES

    check_cca(args)
    report = compare_sources(
        args.model_a,
        args.model_b,
        dataset=args.dataset,
        out=args.out,
        split=args.split,
        limit=args.limit,
        img_size=args.img_size,
        batch_size=args.batch_size,
        workers=args.workers,
        metrics=args.metrics,
        layers=args.layers,
        max_positions=args.max_positions,
        epsilon=args.epsilon,
        pretrained=not args.no_pretrained,
        random_b=args.random_b,
        seed=args.seed,
        device=args.device,
    )
    print(report.to_markdown())
    print("wrote " + ", ".join(str(Path(args.out) / f"similarity.{kind}") for kind in REPORT_FILES))
    return 0


def _layer_spec(text: str) -> str | tuple[str, str]:
    """--layers item: NAME (the same layer in both models) or NAME_A:NAME_B."""
    name_a, separator, name_b = text.partition(":")
    if not separator:
        return text
    if not name_a or not name_b or ":" in name_b:
        raise argparse.ArgumentTypeError(f"expected NAME or NAME_A:NAME_B, got {text!r}")
    return name_a, name_b


def _add_cca(subparsers: argparse._SubParsersAction) -> None:
    from timm_transfusion.similarity.compare import METRIC_FUNCTIONS

    parser = subparsers.add_parser("cca", help="layer-wise (SV/PW)CCA and CKA between two models")
    parser.add_argument(
        "model_a",
        metavar="RUN_OR_MODEL_A",
        help="run folder, local-dir:PATH, hf-hub:ORG/NAME or timm model name",
    )
    parser.add_argument("model_b", metavar="RUN_OR_MODEL_B", help="the model to compare with (same forms)")
    parser.add_argument("--dataset", required=True, metavar="SPEC", help="images, e.g. npz:PATH")
    parser.add_argument("--out", required=True, metavar="DIR", help="writes similarity.{json,csv,md,png}")
    parser.add_argument("--split", default="test", help="dataset split (default test)")
    parser.add_argument("--limit", type=int, metavar="N", help="use the first N images")
    parser.add_argument("--img-size", type=int, metavar="PX", help="input size (default: model A's)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["pwcca", "svcca", "linear_cka"],
        choices=list(METRIC_FUNCTIONS),
        help="metrics to compute (default: pwcca svcca linear_cka)",
    )
    parser.add_argument(
        "--layers",
        nargs="+",
        type=_layer_spec,
        metavar="NAME[:NAME_B]",
        help="layers: NAME in both models or NAME_A:NAME_B pairs (default: every block group for one "
        "architecture, else layers paired by feature reduction)",
    )
    parser.add_argument("--max-positions", type=int, default=64, help="spatial positions per image and layer")
    parser.add_argument("--epsilon", type=float, default=0.0, help="google/svcca's small-variance cutoff")
    parser.add_argument(
        "--no-pretrained",
        action="store_true",
        help="both models get timm's random (seeded) weights, run folders too (their architecture)",
    )
    parser.add_argument(
        "--random-b",
        action="store_true",
        help="only model B gets timm's random (seeded) weights: pretrained vs random init of one architecture",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights and position sampling")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.set_defaults(handler=_run_cca)


def _run_train(args: argparse.Namespace) -> int:
    from timm_transfusion.train import run_from_args

    return run_from_args(args, prog="transfusion train: error")


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    from timm_transfusion.train import add_train_arguments

    parser = subparsers.add_parser("train", help="fine-tune a timm model with an init (accelerate loop)")
    add_train_arguments(parser)
    parser.set_defaults(handler=_run_train)


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


EXPERIMENT_VERBS = ("plan", "run", "report")


def _plan_from_args(args: argparse.Namespace) -> Plan:
    from timm_transfusion.train import config_from_args
    from timm_transfusion.train.grid import build_plan, check_plan, write_plan

    seeds = list(range(args.seeds)) if args.seeds >= 1 else []
    axes = {"inits": _names(args.inits), "seeds": seeds, "source": args.source}
    axes.update({"models": _names(args.models) or None, "lrs": args.lr_grid or None})
    plan = build_plan(args.output, config_from_args(args), **axes)
    check_plan(plan)
    outcome = write_plan(plan, overwrite=args.overwrite)
    print(f"plan: {plan.folder / 'plan.json'} ({outcome}): {len(plan.cells)} cells")
    return plan


def _run_cells(plan: Plan, cells: list[PlanCell], args: argparse.Namespace) -> int:
    from timm_transfusion.train.workers import run_cells

    try:
        result = run_cells(
            plan,
            cells,
            jobs=args.jobs,
            launcher=args.launcher,
            stale_after=args.stale_after,
            progress=args.progress,
        )
    except KeyboardInterrupt:
        print(
            "transfusion experiment: interrupted; running cells stopped, their locks freed", file=sys.stderr
        )
        return 130
    except OSError as err:
        print(
            f"transfusion experiment: error: cannot start a cell ({err}); check --launcher", file=sys.stderr
        )
        return 2
    print(
        f"worker: {len(result.trained)} trained, {len(result.already_finished)} already finished, "
        f"{len(result.held_elsewhere)} held by other workers, {len(result.failed)} failed"
    )
    if result.failed:
        print(f"failed cells: {', '.join(result.failed)} (logs in {plan.folder / 'cells'})", file=sys.stderr)
    return 0 if result.ok else 1


def _report(plan: Plan, args: argparse.Namespace) -> int:
    from timm_transfusion.train.grid_report import report_grid, status_lines

    cross_init = not getattr(args, "no_cross_init", False)
    states, paths = report_grid(plan, stale_after=args.stale_after, cross_init=cross_init)
    print("\n".join(status_lines(states, plan.skipped)))
    print(f"report: {paths['results.md']}" if paths else "report: no cell has finished yet")
    return 0


def _run_experiment(args: argparse.Namespace) -> int:
    """No verb: plan + run every cell + report, so one command still does the whole grid."""
    from timm_transfusion.cli_checks import check_workers

    check_workers(args)
    plan = _plan_from_args(args)
    if args.report_only:
        return _report(plan, args)
    code = _run_cells(plan, list(plan.cells), args)
    return _report(plan, args) or code


def _run_experiment_plan(args: argparse.Namespace) -> int:
    _plan_from_args(args)
    return 0


def _run_experiment_run(args: argparse.Namespace) -> int:
    from timm_transfusion.cli_checks import check_workers
    from timm_transfusion.train.grid import load_plan, parse_shard, select_cells, shard_from_slurm

    check_workers(args)
    plan = load_plan(args.experiment)
    shard = parse_shard(args.shard) if args.shard else None
    if shard is None and args.cell is None:
        shard = shard_from_slurm()
        if shard is not None:
            print(f"Slurm array task: shard {shard[0]}/{shard[1]}")
    return _run_cells(plan, select_cells(plan, cell=args.cell, shard=shard), args)


def _run_experiment_report(args: argparse.Namespace) -> int:
    from timm_transfusion.cli_checks import check_workers
    from timm_transfusion.train.grid import load_plan

    check_workers(args)
    return _report(load_plan(args.experiment), args)


def _add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    from timm_transfusion.train import add_train_arguments
    from timm_transfusion.train.config import float_list

    add_train_arguments(parser, grid=True)
    parser.add_argument(
        "--source", help="source weights for every init but random (timm name, file, local-dir:)"
    )
    parser.add_argument(
        "--inits",
        default="random,pretrained,meanvar,transfusion-1,transfusion-2",
        help="comma-separated init names; transfusion-* = transfusion-0 .. the model's block groups",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per init")
    parser.add_argument(
        "--models", help="comma-separated timm models, each with every init (default: --model)"
    )
    parser.add_argument(
        "--lr-grid",
        type=float_list,
        default=None,
        help="learning rates, e.g. 3e-4,1e-3,3e-3: each init gets the one best on --select-split",
    )


def _add_worker_arguments(parser: argparse.ArgumentParser, *, stale_only: bool = False) -> None:
    from timm_transfusion.train.cell_lock import DEFAULT_STALE_AFTER

    parser.add_argument(
        "--stale-after",
        type=float,
        default=DEFAULT_STALE_AFTER,
        metavar="S",
        help=f"a lock without heartbeat for S seconds is stale (default {DEFAULT_STALE_AFTER:.0f})",
    )
    if stale_only:
        return
    parser.add_argument("--jobs", type=int, default=1, help="cells at once, each its own process and GPU")
    parser.add_argument(
        "--launcher",
        metavar="CMD",
        help='run each cell under a launcher, e.g. "accelerate launch --num_processes 8" or "torchrun '
        '--nproc_per_node 8" (it gets -m timm_transfusion.train.cell EXP I)',
    )


def _add_experiment(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="the paper's grid: models x inits x lrs x seeds, findings + tables + plots (verbs: plan | run | report)",
        description="Without a verb: plan the grid, run every cell (each its own process), write the report. "
        "`transfusion experiment plan|run|report --help` for the steps.",
    )
    _add_grid_arguments(parser)
    _add_worker_arguments(parser)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the report from the cells that have finished (the others are listed)",
    )
    parser.add_argument(
        "--no-cross-init",
        action="store_true",
        help="with --report-only: skip pretrained vs random against the seed baseline (slow on a CPU)",
    )
    parser.set_defaults(handler=_run_experiment)


def build_experiment_parser() -> argparse.ArgumentParser:
    """`transfusion experiment plan|run|report`: `main` sends `experiment VERB ...` here, so the verb-less
    `transfusion experiment --model ...` keeps its required grid options."""
    parser = argparse.ArgumentParser(prog="transfusion experiment")
    parser.set_defaults(command="experiment")
    subparsers = parser.add_subparsers(required=True, metavar="VERB")
    plan = subparsers.add_parser(
        "plan",
        help="write the grid as EXP/plan.json",
        description="Write the grid as EXP/plan.json (one entry per cell: run folder and train config).",
    )
    _add_grid_arguments(plan)
    plan.set_defaults(handler=_run_experiment_plan)

    run = subparsers.add_parser(
        "run",
        help="run cells of a plan (--cell, --shard, --jobs, --launcher)",
        description="Run cells of a plan, each in its own process; finished cells are skipped, cells another "
        "worker holds are left to it. Under a Slurm job array the shard comes from SLURM_ARRAY_TASK_ID/COUNT.",
    )
    run.add_argument("experiment", metavar="EXP", help="folder holding plan.json")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--cell", metavar="I", help="one cell, by index or name")
    which.add_argument("--shard", metavar="I/N", help="every N-th cell from I (0-based)")
    _add_worker_arguments(run)
    run.add_argument("--no-progress", dest="progress", action="store_false")
    run.set_defaults(handler=_run_experiment_run)

    report = subparsers.add_parser(
        "report",
        help="report the finished cells; list missing and failed ones",
        description="Report the finished cells and list the missing, running and failed ones (any time).",
    )
    report.add_argument("experiment", metavar="EXP", help="folder holding plan.json")
    _add_worker_arguments(report, stale_only=True)
    report.set_defaults(handler=_run_experiment_report)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transfusion",
        description="Transfusion tools for timm models: initializers, similarity, fine-tuning, Hub.",
    )
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")
    _add_inits(subparsers)  # in the order of the data flow: init → train → compare → publish
    _add_models(subparsers)
    _add_train(subparsers)
    _add_experiment(subparsers)
    _add_cca(subparsers)
    _add_card(subparsers)
    _add_push(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; exit codes as in the module docstring (argparse itself exits 2 on bad usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["experiment"] and argv[1:2] and argv[1] in EXPERIMENT_VERBS:
        args = build_experiment_parser().parse_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
    from timm_transfusion.errors import TransfusionError

    try:
        return args.handler(args)
    except TransfusionError as err:
        print(f"transfusion {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # train and experiment say at which step; elsewhere nothing was half-written
        print(f"transfusion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
