"""Small dense decompositions (eigh, SVD, QR of d×d matrices) run single-threaded on the CPU.

Their many short parallel regions gain little from a second thread on an idle machine and collapse when
the cores are shared (a descheduled OpenMP thread stalls every barrier: seconds instead of milliseconds
for one 512×512 eigh on a busy 2-core machine). The large GEMMs that dominate accumulation keep all threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch
from threadpoolctl import ThreadpoolController


@contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """Run the enclosed torch (and NumPy BLAS) work on one thread when ``device`` is the CPU."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _blas_controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


@cache
def _blas_controller() -> ThreadpoolController:
    """The loaded BLAS libraries, found once (a fresh scan costs about a millisecond per call)."""
    return ThreadpoolController()
