"""One lock per stack: `up`, `down`, `configure` and `drill` never run on the same stack at once.

The lock is an flock on ``.lgcloud/<stack>/stack.lock`` (the kernel drops it when its holder
dies, so a crashed run never leaves the stack locked); the holder writes who it is beside it, so
the next operator is told which verb holds the stack, since when, and from which process::

    with stack_lock("dev", "up"):
        ...
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from ..errors import EXIT_BAD_INPUT, OperatorError
from .directory import state_dir, write_atomic

__all__ = ["Holder", "StackBusy", "stack_lock"]


@dataclass(frozen=True)
class Holder:
    verb: str
    pid: int
    since: float  # epoch seconds

    def __str__(self) -> str:
        return f"`lgcloud {self.verb}` (pid {self.pid}) since {time.strftime('%H:%M:%S', time.localtime(self.since))}"


class StackBusy(OperatorError):
    """Another run holds the stack; nothing was changed."""

    exit_code = EXIT_BAD_INPUT


def _holder(stack: str) -> Holder | None:
    try:
        return Holder(**json.loads((state_dir(stack) / "stack.holder").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


@contextmanager
def stack_lock(stack: str, verb: str, wait: bool = False) -> Iterator[Holder]:
    """Hold the stack for `verb`; StackBusy naming the holder when another run has it (or, with
    `wait`, block until it is released)."""
    fd = os.open(state_dir(stack) / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _holder(stack)
            raise StackBusy(
                f"stack {stack} is held by {holder or 'another lgcloud run'}",
                "wait for it to finish, or run again with --wait to queue behind it",
            ) from None
        me = Holder(verb, os.getpid(), time.time())
        write_atomic(state_dir(stack) / "stack.holder", json.dumps(asdict(me)), 0o600)
        try:
            yield me
        finally:
            (state_dir(stack) / "stack.holder").unlink(missing_ok=True)
    finally:
        os.close(fd)
