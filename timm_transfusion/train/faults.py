"""What can stop a training that the user did not get wrong: an interrupt, or checkpoints that cannot be read."""

from __future__ import annotations

from ..errors import TransfusionError


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: says at which step and how to continue (the CLI prints it and exits 130)."""


class NoIntactCheckpointError(TransfusionError, RuntimeError):
    """``--resume`` found checkpoints but none of them can be loaded (a fault: exit status 1)."""
