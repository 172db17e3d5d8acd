"""Reading JSON lines and writing files atomically: a temporary file beside the target, then a rename.

Every tool writes this way (run folders, similarity reports, plots, model cards), so a kill leaves either
the old file or the new one, never a fragment that a later run would trust.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"


@functools.cache
def default_file_mode() -> int:
    """The mode a plain `open()` would give a new file (mkstemp's files are private, 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block succeeds and deleted when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX + path.name)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, default_file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8, newlines untranslated) to `path` atomically and durably; returns the path."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    return Path(path)


def read_jsonl(path: str | Path) -> list[dict]:
    """One JSON object per non-empty line (metrics.jsonl)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
