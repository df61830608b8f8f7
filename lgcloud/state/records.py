"""A JSON file of the state directory holding one record per municipality, changed under a lock
and written whole: what a failover left served from the backup site, which restores an operator
is inspecting.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Note:
    ...     text: str
    >>> notes = Records("doctest-notes.json", Note)
    >>> notes.put("recordstest", "a-city", Note("kept"))
    >>> notes.all("recordstest")
    {'a-city': Note(text='kept')}
    >>> notes.put("recordstest", "a-city", None); notes.all("recordstest")
    {}
    >>> notes.clear("recordstest")
    >>> import shutil; shutil.rmtree(state_dir("recordstest"))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Generic, TypeVar

from .directory import file_lock, state_dir, write_atomic

__all__ = ["Records"]

T = TypeVar("T")


class Records(Generic[T]):
    """Records of one kind by municipality id, in ``<state dir>/<filename>`` (0600)."""

    def __init__(self, filename: str, kind: Callable[..., T]) -> None:
        self.filename, self.kind = filename, kind

    def _path(self, stack: str) -> Path:
        return state_dir(stack) / self.filename

    def _lock(self, stack: str) -> Path:
        return state_dir(stack) / f"{Path(self.filename).stem}.lock"

    def all(self, stack: str) -> dict[str, T]:
        path = self._path(stack)
        if not path.exists():
            return {}
        entries: dict[str, dict[str, Any]] = json.loads(path.read_text())
        return {municipality: self.kind(**entry) for municipality, entry in entries.items()}

    def put(self, stack: str, municipality: str, record: T | None) -> None:
        """Record `record` for the municipality (None: forget it); the others are kept."""
        self.put_all(stack, {municipality: record})

    def put_all(self, stack: str, records: dict[str, T | None]) -> None:
        """`put` of several municipalities in one write: all of them are recorded, or none."""
        with file_lock(self._lock(stack)):
            state = self.all(stack)
            for municipality, record in records.items():
                if record is None:
                    state.pop(municipality, None)
                else:
                    state[municipality] = record
            document = {m: asdict(r) for m, r in state.items()}  # type: ignore[call-overload]
            write_atomic(self._path(stack), json.dumps(document, indent=2, ensure_ascii=False), 0o600)

    def clear(self, stack: str) -> None:
        with file_lock(self._lock(stack)):
            self._path(stack).unlink(missing_ok=True)
