"""Temporary files beside a record, written and then renamed over it, and the kept files readers trust
(collect's table, a plan memo): imported by status.py and index.py alike (index.py importing new_temp from
status.py made an import cycle)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def new_temp(path: str | Path, mode: int = 0o666) -> tuple[int, Path]:
    """A new temporary file beside `path`, to write and then rename over it: `.<name>.<pid>.<random>.tmp`
    (status.ATOMIC_TMP_GLOB), created exclusively and never through a link, so a name planted in a shared
    (group-writable) dir, a link to another file of this user's, is never written through (R37 W4).
    Returns its fd (open for writing) and path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(tmp, flags, mode), tmp


def owned_alone(stat: os.stat_result) -> bool:
    """Whether a kept file (a collect's table, a plan memo) may be read: written by this user and writable
    by no one else. A sweep dir may be shared (a project's group-writable dir on a cluster): a file another
    user wrote or could change is not read, and its reader builds anew (R37 F4)."""
    return stat.st_uid == os.geteuid() and not stat.st_mode & 0o022


def replace_file(
    path: str | Path,
    write: Callable[[BinaryIO], None],
    *,
    mode: int = 0o666,
    fsync: bool = False,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write `path` anew: `write` fills a new_temp file (created with `mode`, less the umask), which is then
    renamed over `path`, so a reader sees the old file or the whole new one. `fsync`: the new bytes are on
    disk before the rename. `before_rename` may raise to refuse the rename, after the write. A write that
    fails or is refused leaves `path` as it was and no temporary file, and raises."""
    fd, tmp = new_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def replace_privately(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """replace_file with mode 0644 whatever the umask (so owned_alone holds for its reader)."""

    def write_private(fh: BinaryIO) -> None:
        os.fchmod(fh.fileno(), 0o644)
        write(fh)

    replace_file(path, write_private, mode=0o644)


def keep_newest(directory: Path, pattern: str, kept: int) -> None:
    """Remove all but the `kept` most recently used (mtime) files of `directory` matching `pattern`."""
    found = []
    for other in directory.glob(pattern):
        with contextlib.suppress(OSError):
            found.append((other.stat().st_mtime_ns, other))
    for _, other in sorted(found, reverse=True)[kept:]:
        with contextlib.suppress(OSError):
            other.unlink()
