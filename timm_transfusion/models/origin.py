"""Which registered timm architectures this plugin provides (stock timm cannot build those)."""

from __future__ import annotations

import timm

__all__ = ["is_plugin_model", "plugin_models"]


def is_plugin_model(name: str) -> bool:
    """True when `name` is unknown to timm or registered by timm-transfusion rather than stock timm.

    With `init=` switched on, timm's table hands out a wrapper around each entrypoint (`.fn` is the
    registered function), so the module is read from the function itself.
    """
    if not timm.models.is_model(name):
        return True
    entry = timm.models.model_entrypoint(name)
    return getattr(entry, "fn", entry).__module__.startswith("timm_transfusion")


def plugin_models() -> list[str]:
    """The architectures this plugin registers (CBR family, mobilenetv1_025, slim hybrids), sorted."""
    return sorted(name for name in timm.list_models() if is_plugin_model(name))
