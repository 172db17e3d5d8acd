"""The `transfusion` command: a thin layer that parses arguments and calls the library."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path


def _run_inits(args: argparse.Namespace) -> int:
    from timm_transfusion import list_inits

    for name, description in list_inits().items():
        print(f"{name:24s} {description}")
    return 0


def _add_inits(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inits", help="list the registered initializers")
    parser.set_defaults(handler=_run_inits)


def _hub_failure(command: str, err: Exception, status: int) -> int:
    print(f"transfusion {command}: error: {err}", file=sys.stderr)
    return status


def _run_card(args: argparse.Namespace) -> int:
    from timm_transfusion.cli_checks import OptionError, check_publish
    from timm_transfusion.hub import ReportFolderError, RunFolderError, write_card

    try:
        check_publish(args)
        path = write_card(
            args.run_dir,
            similarity=args.similarity,
            experiment=args.experiment,
            repo_id=args.repo_id,
            license=args.license,
            force=args.force,
        )
    except (OptionError, RunFolderError, ReportFolderError) as err:
        return _hub_failure("card", err, 2)
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
    from timm_transfusion.cli_checks import OptionError, check_publish
    from timm_transfusion.hub import (
        MissingTokenError,
        NothingToPushError,
        PushError,
        ReportFolderError,
        RunFolderError,
        push_to_hub,
    )

    try:
        check_publish(args)
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
    except (OptionError, MissingTokenError, RunFolderError, ReportFolderError) as err:
        return _hub_failure("push", err, 2)
    except (NothingToPushError, PushError) as err:
        return _hub_failure("push", err, 1)
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


def _cca_failure(err: BaseException, status: int) -> int:
    print(f"transfusion cca: error: {err}", file=sys.stderr)
    return status


def _run_cca(args: argparse.Namespace) -> int:
    from timm_transfusion.cli_checks import OptionError, check_cca
    from timm_transfusion.data import DatasetSpecError, LabelError
    from timm_transfusion.similarity import SimilarityError
    from timm_transfusion.train.model import ImageSizeError

    try:
        check_cca(args)
        return _compare_and_save(args, Path(args.out))
    except (OptionError, DatasetSpecError, LabelError, ImageSizeError, SimilarityError) as err:
        return _cca_failure(err, 2)
    except (RuntimeError, OSError, ValueError) as err:
        return _cca_failure(err, 1)


def _cca_provenance(args: argparse.Namespace, side: str, random: bool, seed: int) -> dict:
    """One side of what ``cca`` compares, as the report records it."""
    from timm_transfusion.cli_checks import looks_like_path

    source = getattr(args, f"model_{side}")
    folder = Path(source.removeprefix("local-dir:")).expanduser()
    resolved = str(folder.resolve()) if looks_like_path(source) else None
    return {"source": source, "folder": resolved, "random": random, "seed": seed if random else None}


def _compare_and_save(args: argparse.Namespace, out: Path) -> int:
    import torch

    from timm_transfusion.similarity import compare
    from timm_transfusion.similarity.sources import default_img_size, image_batches, load_model, normalization
    from timm_transfusion.train.model import check_image_size

    random_a, random_b = args.no_pretrained, args.no_pretrained or args.random_b
    model_a = load_model(args.model_a, pretrained=not random_a, seed=args.seed)
    model_b = load_model(args.model_b, pretrained=not random_b, seed=args.seed + 1)
    size = args.img_size or default_img_size(model_a)
    for model in (model_a, model_b):  # a fixed-size model (e.g. ViT) refuses other sizes: say so up front
        check_image_size(model, size)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_a, model_b = model_a.to(device), model_b.to(device)
    loader, preprocess = image_batches(
        args.dataset,
        model_a,
        split=args.split,
        img_size=size,
        batch_size=args.batch_size,
        limit=args.limit,
        workers=args.workers,
    )
    sides = {
        "a": _cca_provenance(args, "a", random_a, args.seed),
        "b": _cca_provenance(args, "b", random_b, args.seed + 1),
    }
    names = tuple(  # a random side says so wherever the report is shown (cards: "runs/x vs runs/x [random]")
        side["source"] + (f" [random init, seed {side['seed']}]" if side["random"] else "")
        for side in sides.values()
    )
    report = compare(
        model_a,
        model_b,
        loader,
        metrics=args.metrics,
        layers=args.layers,
        max_positions=args.max_positions,
        epsilon=args.epsilon,
        seed=args.seed,
        preprocess=preprocess,
        preprocess_b=normalization(model_b, size),
        names=names,
        progress=True,
    )
    data = {
        "dataset": args.dataset,
        "split": args.split,
        "limit": args.limit,
        "img_size": size,
        "max_positions": args.max_positions,
        "position_seed": args.seed,
    }
    report = dataclasses.replace(report, provenance={**sides, "data": data})
    paths = report.save(out)
    print(report.to_markdown())
    print("wrote " + ", ".join(str(path) for path in paths.values()))
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
    from timm_transfusion.similarity import METRIC_FUNCTIONS

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


def _run_experiment(args: argparse.Namespace) -> int:
    from timm_transfusion.train import USER_ERRORS, NoIntactCheckpointError, config_from_args
    from timm_transfusion.train.experiment import run_experiment

    inits = [name.strip() for name in args.inits.split(",") if name.strip()]
    try:
        paths = run_experiment(config_from_args(args), inits=inits, seeds=args.seeds, source=args.source)
    except USER_ERRORS as err:
        print(f"transfusion experiment: error: {err}", file=sys.stderr)
        return 2
    except NoIntactCheckpointError as err:
        print(f"transfusion experiment: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # TrainingInterrupted names the step; rerunning resumes every cell
        print(f"{err or 'interrupted'}; rerun the same command to continue the grid", file=sys.stderr)
        return 130
    print(f"report: {paths['results.md']}")
    return 0


def _add_experiment(subparsers: argparse._SubParsersAction) -> None:
    from timm_transfusion.train import add_train_arguments

    parser = subparsers.add_parser("experiment", help="the paper's grid: inits x seeds, results + plots")
    add_train_arguments(parser, grid=True)
    parser.add_argument(
        "--source", help="source weights for every init but random (timm name, file, local-dir:)"
    )
    parser.add_argument(
        "--inits",
        default="random,pretrained,meanvar,transfusion-1,transfusion-2",
        help="comma-separated init names",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per init")
    parser.set_defaults(handler=_run_experiment)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transfusion",
        description="Transfusion tools for timm models: initializers, similarity, fine-tuning, Hub.",
    )
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_inits(subparsers)  # in the order of the data flow: init → train → compare → publish
    _add_train(subparsers)
    _add_experiment(subparsers)
    _add_cca(subparsers)
    _add_card(subparsers)
    _add_push(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
