"""What service level management keeps in the stack's state: planned work (``maintenance.json``),
when each municipality was put into service (``in-service.json``), and the operator's notes on
incidents (``incident-notes.json``). Each is changed under a lock and written whole.

Planned work is a window: when it began and ended, what it was, by whom, for which
municipalities (none named: the whole stack). The lab writes its own (``planned_work``) around
``up``, ``configure``, ``restore``, ``failback`` and drills; an operator opens and closes one for
work outside the tool (``lgcloud maintenance start|end``)::

    with planned_work("dev", "configure", "lgcloud configure"):
        ...
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..model.calendar import JST
from .directory import file_lock, state_dir, write_atomic

__all__ = [
    "OPERATOR",
    "IncidentNote",
    "MaintenanceWindow",
    "PlannedWork",
    "end_maintenance",
    "forget_in_service",
    "in_service_since",
    "incident_notes",
    "maintenance_windows",
    "note_incident",
    "planned_work",
    "record_in_service",
    "start_maintenance",
]

OPERATOR = "operator"  # the kind of a window an operator opened with `lgcloud maintenance start`


@dataclass(frozen=True)
class MaintenanceWindow:
    id: int
    kind: str  # OPERATOR, or the lab's verb: up, configure, restore, failback, drill
    reason: str
    by: str
    start: float  # epoch seconds
    end: float | None = None  # None while it is open
    municipalities: tuple[str, ...] = ()  # none: every municipality of the stack
    pid: int | None = None  # the lab's own windows: the process that holds it open

    def covers(self, municipality: str) -> bool:
        return not self.municipalities or municipality in self.municipalities

    @property
    def orphaned(self) -> bool:
        """Open, but the process that was to close it is gone (killed): only an operator can end it."""
        if self.end is not None or self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


@dataclass(frozen=True)
class IncidentNote:
    at: float
    by: str
    text: str


def _path(stack: str, name: str) -> Path:
    return state_dir(stack) / name


def _read(stack: str, name: str, default: Any) -> Any:
    path = _path(stack, name)
    return json.loads(path.read_text()) if path.exists() else default


def _write(stack: str, name: str, document: Any) -> None:
    write_atomic(_path(stack, name), json.dumps(document, indent=2, ensure_ascii=False), 0o600)


def _lock(stack: str) -> Path:
    return _path(stack, "slm.lock")


def _window(entry: dict[str, Any]) -> MaintenanceWindow:
    return MaintenanceWindow(**{**entry, "municipalities": tuple(entry.get("municipalities", ()))})


def maintenance_windows(stack: str) -> list[MaintenanceWindow]:
    """Every window recorded, oldest first."""
    return [_window(e) for e in _read(stack, "maintenance.json", [])]


def _save(stack: str, windows: list[MaintenanceWindow]) -> None:
    _write(stack, "maintenance.json", [asdict(w) for w in windows])


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _scope(municipalities: Iterable[str]) -> str:
    return ", ".join(municipalities) or "the whole stack"


def start_maintenance(
    stack: str,
    reason: str,
    municipalities: Iterable[str] = (),
    kind: str = OPERATOR,
    pid: int | None = None,
    at: float | None = None,
) -> MaintenanceWindow:
    """Open a window. An operator's window that would overlap an open one of an operator (for any
    municipality both cover) is refused: close that one first, so every window has one meaning."""
    chosen = tuple(sorted(set(municipalities)))
    if not reason.strip():
        raise OperatorError(
            "planned work needs a reason", "say what is done, e.g. --reason 'OS patching'", EXIT_BAD_INPUT
        )
    with file_lock(_lock(stack)):
        windows = maintenance_windows(stack)
        if kind == OPERATOR:
            for w in windows:
                both = not chosen or not w.municipalities or set(chosen) & set(w.municipalities)
                if w.kind == OPERATOR and w.end is None and both:
                    raise OperatorError(
                        f"maintenance window {w.id} ({w.reason!r}, {_scope(w.municipalities)}) is open since "
                        f"{dt.datetime.fromtimestamp(w.start, JST):%Y-%m-%d %H:%M} JST and would overlap this one",
                        f"end it first: `lgcloud maintenance end --stack {stack} --id {w.id}` (nothing was written)",
                        EXIT_BAD_INPUT,
                    )
        window = MaintenanceWindow(
            id=max((w.id for w in windows), default=0) + 1,
            kind=kind,
            reason=reason.strip(),
            by=_who() if kind == OPERATOR else f"{_who()} (lgcloud {kind})",
            start=time.time() if at is None else at,
            municipalities=chosen,
            pid=pid,
        )
        _save(stack, [*windows, window])
    return window


def end_maintenance(
    stack: str, window_id: int | None = None, municipalities: Iterable[str] = (), at: float | None = None
) -> MaintenanceWindow:
    """Close the open window `window_id`, or the one open operator's window of exactly that scope."""
    chosen = tuple(sorted(set(municipalities)))
    with file_lock(_lock(stack)):
        windows = maintenance_windows(stack)
        open_ = [w for w in windows if w.end is None]
        if window_id is not None:
            found = [w for w in open_ if w.id == window_id]
        else:
            found = [w for w in open_ if w.kind == OPERATOR and w.municipalities == chosen]
        if len(found) != 1:
            listed = "; ".join(f"{w.id}: {w.reason} ({_scope(w.municipalities)})" for w in open_) or "none"
            what = f"window {window_id}" if window_id is not None else f"an operator's window for {_scope(chosen)}"
            problem = "is not open" if not found else "is ambiguous"
            raise OperatorError(
                f"maintenance end: {what} {problem}; open windows: {listed}",
                "name one with --id N, or open one with `lgcloud maintenance start --reason TEXT` (nothing written)",
                EXIT_BAD_INPUT,
            )
        ended = replace(found[0], end=time.time() if at is None else at)
        _save(stack, [ended if w.id == ended.id else w for w in windows])
    return ended


@dataclass
class PlannedWork:
    """The window of the lab's own work in progress; ``nothing_done()`` when it changed nothing
    (an `up` or a `configure` with no change), so that the log keeps only what touched the service."""

    window: MaintenanceWindow
    done: bool = True

    def nothing_done(self) -> None:
        self.done = False


@contextmanager
def planned_work(stack: str, kind: str, reason: str, municipalities: Iterable[str] = ()) -> Iterator[PlannedWork]:
    """The lab's own planned work: a window open for the block, closed however the block ends."""
    work = PlannedWork(start_maintenance(stack, reason, municipalities, kind=kind, pid=os.getpid()))
    try:
        yield work
    except OperatorError as exc:
        if exc.exit_code == EXIT_BAD_INPUT:  # refused before anything was changed: no work was done
            work.nothing_done()
        raise
    finally:
        if work.done:
            end_maintenance(stack, work.window.id)
        else:
            with file_lock(_lock(stack)):
                _save(stack, [w for w in maintenance_windows(stack) if w.id != work.window.id])


def in_service_since(stack: str) -> dict[str, float]:
    """Municipality id -> when its service first passed verification after `configure`."""
    return {m: float(t) for m, t in _read(stack, "in-service.json", {}).items()}


def forget_in_service(stack: str) -> None:
    with file_lock(_lock(stack)):
        _path(stack, "in-service.json").unlink(missing_ok=True)


def record_in_service(stack: str, municipalities: Iterable[str], at: float | None = None) -> dict[str, float]:
    """Record the municipalities put into service now; one already in service keeps its date."""
    with file_lock(_lock(stack)):
        since = in_service_since(stack)
        for m in municipalities:
            since.setdefault(m, time.time() if at is None else at)
        _write(stack, "in-service.json", since)
    return since


def incident_notes(stack: str) -> dict[str, list[IncidentNote]]:
    """Incident id -> the operator's notes on it (cause, action), oldest first."""
    return {i: [IncidentNote(**n) for n in notes] for i, notes in _read(stack, "incident-notes.json", {}).items()}


def note_incident(stack: str, incident: str, text: str) -> IncidentNote:
    if not text.strip():
        raise OperatorError("an incident note needs a text", "say the cause or the action taken", EXIT_BAD_INPUT)
    note = IncidentNote(time.time(), _who(), text.strip())
    with file_lock(_lock(stack)):
        notes = _read(stack, "incident-notes.json", {})
        notes.setdefault(incident, []).append(asdict(note))
        _write(stack, "incident-notes.json", notes)
    return note
