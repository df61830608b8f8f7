"""A stack's state directory, and the two ways anything is written into it: whole or not at all,
and under a lock when several writers may meet.

    >>> state_dir("dev").name
    'dev'
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..paths import STATE_ROOT

__all__ = ["file_lock", "state_dir", "write_atomic"]


def state_dir(stack: str, root: Path = STATE_ROOT) -> Path:
    """Where a stack keeps what must not be in git (keys, secrets, run artifacts); made 0700."""
    path = root / stack
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write `path` whole or not at all: a temporary file beside it, flushed, then renamed.

    An interruption leaves the old file, never half a new one."""
    raw = data.encode() if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)  # a leftover temporary file may have had another mode
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if absent) for the block.

    An flock on a file opened anew: it excludes other processes and other threads alike, and
    the kernel releases it when its holder dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
