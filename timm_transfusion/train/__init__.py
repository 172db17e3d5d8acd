"""Fine-tuning with accelerate: the loop, evaluation with offline evaluate metrics, convergence, run folders.

`train` (and with it accelerate, datasets and evaluate) is imported on first use, so the command line's
`--help` and the option parsers load none of them.
"""

import argparse
import sys
from typing import Any

from ..errors import TransfusionError
from ..files import read_jsonl
from .config import TrainConfig, TrainConfigError, add_train_arguments, config_from_args
from .convergence import TrainHistory, steps_to_threshold
from .faults import NoIntactCheckpointError
from .model import ImageSizeError
from .run_folder import OutputFolderError

# Mistakes in the user's input: reported as one clear line by the command-line tools, not as a traceback.
USER_ERRORS = (TransfusionError,)

__all__ = [
    "USER_ERRORS",
    "ImageSizeError",
    "NoIntactCheckpointError",
    "OutputFolderError",
    "TrainConfig",
    "TrainConfigError",
    "TrainHistory",
    "add_train_arguments",
    "run_from_args",
    "config_from_args",
    "main",
    "read_jsonl",
    "steps_to_threshold",
    "train",
]


def __getattr__(name: str) -> Any:
    if name == "train":
        from .loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_from_args(args: argparse.Namespace, *, prog: str = "error") -> int:
    """Train from parsed arguments; a user mistake prints one line and returns 2, a checkpoint that cannot be
    resumed 1, Ctrl-C 130 (with the step and how to continue). The process group is closed."""
    from accelerate import PartialState

    from .loop import train

    try:
        train(config_from_args(args))
    except NoIntactCheckpointError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    except TransfusionError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # the loop's interrupt says at which step and how to continue
        print(
            str(err) or "interrupted before training started; rerun the same command with --resume",
            file=sys.stderr,
        )
        return 130
    finally:
        PartialState().destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/train.py`` (works under python, accelerate launch and torchrun)."""
    parser = argparse.ArgumentParser(
        description="Fine-tune a timm model with a Transfusion init (accelerate)."
    )
    add_train_arguments(parser)
    return run_from_args(parser.parse_args(argv))
