"""Which kind of model or weights a source string names: decided here, once, for every tool."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".tar")
SourceKind = Literal["hf-hub", "local-dir", "folder", "file", "timm"]


def source_kind(text: str) -> SourceKind:
    """``hf-hub:ORG/NAME``, ``local-dir:PATH``, an existing ``folder``, a weights ``file`` (existing, or
    path-like: a separator or a weights suffix), else a ``timm`` model name (with or without tag)."""
    prefix = text.partition(":")[0]
    if prefix in ("hf-hub", "local-dir"):
        return prefix
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file() or path.suffix in WEIGHT_SUFFIXES or "/" in text or "\\" in text:
        return "file"
    return "timm"


def local_path(text: str) -> Path:
    """The path a ``local-dir:``, folder or file source names."""
    return Path(text.removeprefix("local-dir:")).expanduser()
