"""The restores an operator is inspecting (``restores.json``): one restore VM per municipality.

`lgcloud restore` records a restore before it makes the VM, so that every later `lgcloud up`
keeps that VM until `lgcloud restore --discard` forgets it. Written whole, under a lock."""

from __future__ import annotations

from dataclasses import dataclass

from .records import Records

__all__ = ["Restore", "active_restores", "forget_restore", "forget_restores", "record_restore"]


@dataclass(frozen=True)
class Restore:
    """A municipality's backup restored to `target` on its restore VM, for inspection."""

    since: float  # epoch seconds
    target: str  # what was asked: "latest", "time 2026-12-01 10:00:00+09:00", "before xid 1234"


_RESTORES: Records[Restore] = Records("restores.json", Restore)


def active_restores(stack: str) -> dict[str, Restore]:
    """Municipality id -> its restore, for every restore VM the stack keeps."""
    return _RESTORES.all(stack)


def record_restore(stack: str, municipality: str, restore: Restore) -> None:
    _RESTORES.put(stack, municipality, restore)


def forget_restore(stack: str, municipality: str) -> None:
    _RESTORES.put(stack, municipality, None)


def forget_restores(stack: str) -> None:
    """Every restore forgotten: the stack is down, its restore VMs with it."""
    _RESTORES.clear(stack)
