"""Where each 情報提供等記録 chain ended at its last intact check (``chains.json``, 0600).

A chain's links show a record changed, removed or slipped in among the others; they cannot show
the newest records removed, nor a whole chain recomputed by someone who changed a record and every
hash after it (the hash has no key). The controller's note of each chain's length and last hash
at the last check that found it intact anchors it: a later check finds the chain shorter, or the
record at that position with another hash."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from .directory import state_dir, write_atomic

__all__ = ["Anchor", "anchors", "forget_anchors", "keep_anchors"]


@dataclass(frozen=True)
class Anchor:
    records: int  # the chain's length through its last record (records a purge removed counted)
    last_hash: str  # the hash of its last record


def anchors(stack: str) -> dict[str, Anchor]:
    """Each keeper's anchor (a municipality id or "broker"); none before a first check."""
    path = state_dir(stack) / "chains.json"
    if not path.exists():
        return {}
    return {keeper: Anchor(**kept) for keeper, kept in json.loads(path.read_text()).items()}


def keep_anchors(stack: str, kept: dict[str, Anchor]) -> None:
    path = state_dir(stack) / "chains.json"
    write_atomic(path, json.dumps({keeper: asdict(anchor) for keeper, anchor in kept.items()}, indent=2), 0o600)


def forget_anchors(stack: str) -> None:
    """After the data is deleted: a new lab's chains start afresh."""
    (state_dir(stack) / "chains.json").unlink(missing_ok=True)
