"""The restores an operator is inspecting (``restores.json``): one restore VM per municipality.

`lgcloud restore` records a restore before it makes the VM, so that every later `lgcloud up`
keeps that VM until `lgcloud restore --discard` forgets it. Written whole, under a lock."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .directory import file_lock, state_dir, write_atomic

__all__ = ["Restore", "active_restores", "forget_restore", "forget_restores", "record_restore"]


@dataclass(frozen=True)
class Restore:
    """A municipality's backup restored to `target` on its restore VM, for inspection."""

    since: float  # epoch seconds
    target: str  # what was asked: "latest", "time 2026-12-01 10:00:00+09:00", "before xid 1234"


def _path(stack: str) -> Path:
    return state_dir(stack) / "restores.json"


def active_restores(stack: str) -> dict[str, Restore]:
    """Municipality id -> its restore, for every restore VM the stack keeps."""
    path = _path(stack)
    if not path.exists():
        return {}
    return {municipality: Restore(**entry) for municipality, entry in json.loads(path.read_text()).items()}


def _change(stack: str, municipality: str, restore: Restore | None) -> None:
    with file_lock(state_dir(stack) / "restores.lock"):
        state = active_restores(stack)
        if restore is None:
            state.pop(municipality, None)
        else:
            state[municipality] = restore
        write_atomic(_path(stack), json.dumps({k: asdict(v) for k, v in state.items()}, indent=2), 0o600)


def record_restore(stack: str, municipality: str, restore: Restore) -> None:
    _change(stack, municipality, restore)


def forget_restore(stack: str, municipality: str) -> None:
    _change(stack, municipality, None)


def forget_restores(stack: str) -> None:
    """Every restore forgotten: the stack is down, its restore VMs with it."""
    with file_lock(state_dir(stack) / "restores.lock"):
        _path(stack).unlink(missing_ok=True)
