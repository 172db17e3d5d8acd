"""`TransfusionError`: the base of every error timm-transfusion raises on purpose.

Each concrete error also keeps its standard base (`ValueError` for bad input, `RuntimeError` for a state that
refuses the operation), so `except ValueError` keeps working; `except TransfusionError` catches exactly the
package's own refusals and never an unexpected failure such as CUDA running out of memory.
"""

from __future__ import annotations


class TransfusionError(Exception):
    """Raised by timm-transfusion on purpose, with a message that says what to change."""
