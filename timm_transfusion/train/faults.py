"""What can stop a training that the user did not get wrong: checkpoints that cannot be read.

(Ctrl-C stays Python's own ``KeyboardInterrupt``; the loop only adds to its message at which step it stopped
and how to continue, so no ``except Exception`` anywhere can swallow it.)
"""

from __future__ import annotations

from ..errors import TransfusionError


class NoIntactCheckpointError(TransfusionError, RuntimeError):
    """``--resume`` found checkpoints but none of them can be loaded (a fault: exit status 1)."""
