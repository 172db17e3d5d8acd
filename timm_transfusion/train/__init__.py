"""Fine-tuning with accelerate: the loop, evaluation with offline evaluate metrics, convergence, run folders."""

from ..data import DatasetSpecError, LabelError
from ..init.errors import InitError
from .config import TrainConfig, TrainConfigError, add_train_arguments, config_from_args
from .convergence import TrainHistory, steps_to_threshold
from .loop import train
from .model import ImageSizeError
from .run_folder import OutputFolderError, read_jsonl

# Mistakes in the user's input: reported as one clear line by the command-line tools, not as a traceback.
USER_ERRORS = (DatasetSpecError, LabelError, ImageSizeError, OutputFolderError, InitError, TrainConfigError)

__all__ = [
    "USER_ERRORS",
    "ImageSizeError",
    "OutputFolderError",
    "TrainConfig",
    "TrainConfigError",
    "TrainHistory",
    "add_train_arguments",
    "config_from_args",
    "main",
    "read_jsonl",
    "steps_to_threshold",
    "train",
]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/train.py`` (works under python, accelerate launch and torchrun)."""
    import argparse
    import sys

    from accelerate import PartialState

    parser = argparse.ArgumentParser(
        description="Fine-tune a timm model with a Transfusion init (accelerate)."
    )
    add_train_arguments(parser)
    try:
        train(config_from_args(parser.parse_args(argv)))
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        PartialState().destroy_process_group()
    return 0
