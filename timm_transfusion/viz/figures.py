"""Figures without pyplot: `matplotlib.figure.Figure` (no global backend switched, nothing left open) and the
one PNG writer, atomic like every other file the package writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import atomic_path


def new_figure(**options: Any):
    """A `matplotlib.figure.Figure` (``figsize=``, ``dpi=``...); not registered with pyplot, so a notebook's
    backend and open figures are left alone."""
    from matplotlib.figure import Figure

    return Figure(**options)


def save_png(figure, path: str | Path, **options: Any) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically (a temporary beside it, then a rename)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", **options)
    return path
