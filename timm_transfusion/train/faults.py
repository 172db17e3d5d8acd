"""What can stop a training that the user did not get wrong: checkpoints that cannot be read, a model that
torch.compile cannot compile.

(Ctrl-C stays Python's own ``KeyboardInterrupt``; the loop only adds to its message at which step it stopped
and how to continue, so no ``except Exception`` anywhere can swallow it.)
"""

from __future__ import annotations

from ..errors import TransfusionError


class NoIntactCheckpointError(TransfusionError, RuntimeError):
    """``--resume`` found checkpoints but none of them can be loaded (a fault: exit status 1)."""


class CompileError(TransfusionError, RuntimeError):
    """``--compile``: torch.compile failed on this model or machine (the eager run works without the flag)."""


def is_compile_failure(error: BaseException) -> bool:
    """Raised from inside torch.compile's tracer or code generator (``torch._dynamo`` / ``torch._inductor``)."""
    return type(error).__module__.startswith(("torch._dynamo", "torch._inductor"))
