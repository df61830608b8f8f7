"""Which municipalities a failover left served from the backup site (``failover.json``).

The unit of failover is a municipality: its primary database, its app and its service address
move together. `lgcloud configure` refuses to run while any municipality is served from the
backup site, so a configuration run can never demote the database that holds the newest data.
Municipalities fail over in parallel, and an operator may run another verb meanwhile: every
change is made under a lock and written whole.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .directory import file_lock, state_dir, write_atomic

__all__ = ["Failover", "fenced_vms", "forget_failovers", "record_failback", "record_failover", "served_from_backup"]


@dataclass(frozen=True)
class Failover:
    """One municipality served from the backup site: since when, and after which drill."""

    since: float  # epoch seconds
    scenario: str
    site: str = "backup"
    fenced: tuple[str, ...] = ()  # the VMs the failover fenced: kept off until failback


def _path(stack: str) -> Path:
    return state_dir(stack) / "failover.json"


def _lock(stack: str) -> Path:
    return state_dir(stack) / "failover.lock"


def served_from_backup(stack: str) -> dict[str, Failover]:
    """Municipality id -> its failover, for every municipality served from the backup site."""
    path = _path(stack)
    if not path.exists():
        return {}
    return {
        municipality: Failover(**{**entry, "fenced": tuple(entry.get("fenced", ()))})
        for municipality, entry in json.loads(path.read_text()).items()
    }


def fenced_vms(stack: str) -> set[str]:
    """Every VM a failover fenced and a failback has not yet brought back."""
    return {vm for failover in served_from_backup(stack).values() for vm in failover.fenced}


def _change(stack: str, municipality: str, failover: Failover | None) -> None:
    with file_lock(_lock(stack)):
        state = served_from_backup(stack)
        if failover is None:
            state.pop(municipality, None)
        else:
            state[municipality] = failover
        document = {m: asdict(f) for m, f in state.items()}
        write_atomic(_path(stack), json.dumps(document, indent=2, ensure_ascii=False), 0o600)


def record_failover(stack: str, municipality: str, failover: Failover) -> None:
    _change(stack, municipality, failover)


def record_failback(stack: str, municipality: str) -> None:
    _change(stack, municipality, None)


def forget_failovers(stack: str) -> None:
    """The stack is gone: nothing is served from anywhere any more."""
    with file_lock(_lock(stack)):
        _path(stack).unlink(missing_ok=True)
