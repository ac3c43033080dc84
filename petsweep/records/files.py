"""Temporary files beside a record, written and then renamed over it: imported by status.py and index.py
alike (index.py importing it from status.py made an import cycle)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def new_temp(path: str | Path, mode: int = 0o666) -> tuple[int, Path]:
    """A new temporary file beside `path`, to write and then rename over it: `.<name>.<pid>.<random>.tmp`
    (status.ATOMIC_TMP_GLOB), created exclusively and never through a link, so a name planted in a shared
    (group-writable) dir, a link to another file of this user's, is never written through (R37 W4).
    Returns its fd (open for writing) and path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(tmp, flags, mode), tmp
