"""``lgcloud incident list|note``: the unplanned outages the office probes saw, derived from
Prometheus (and the alerts it fired), with the operator's notes on cause and action."""

from __future__ import annotations

import argparse
import datetime as dt
import time

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..model.calendar import JST
from ..model.schema import duration_seconds
from ..observe.slm import Incident, incidents
from ..state.slm import in_service_since, incident_notes, maintenance_windows, note_incident
from .options import Options
from .sla import asked_prometheus, show_incidents

__all__ = ["add"]


def _found(opts: Options, start: float, end: float, municipalities: list[str]) -> list[Incident]:
    cfg = opts.config()
    chosen = [cfg.municipality_named(m) for m in municipalities] or list(cfg.municipalities)
    prometheus, served = asked_prometheus(opts, cfg.stack)
    return incidents(
        cfg,
        prometheus,
        served,
        start,
        end,
        maintenance_windows(cfg.stack),
        in_service_since(cfg.stack),
        incident_notes(cfg.stack),
        chosen,
    )


def run_list(opts: Options) -> int:
    try:
        window = duration_seconds(opts.args.window)
    except ValueError as exc:
        raise OperatorError(f"--window: {exc}", exit_code=EXIT_BAD_INPUT) from None
    now = time.time()
    found = _found(opts, now - window, now, opts.args.municipality or [])
    if opts.flag("json"):
        opts.output.json([{**i.__dict__, "seconds": i.seconds} for i in found])
    else:
        show_incidents(opts, found, f"incidents of stack {opts.stack} in the last {opts.args.window}")
    return 0


def run_note(opts: Options) -> int:
    ident = opts.args.incident
    # <municipality>-<system>-<YYYYmmdd>-<HHMMSS>; a municipality's id may hold hyphens, a system's not.
    municipality, system, day, clock = (ident.rsplit("-", 3) + ["", "", ""])[:4]
    try:
        start: float | None = dt.datetime.strptime(f"{day}-{clock}", "%Y%m%d-%H%M%S").replace(tzinfo=JST).timestamp()
    except ValueError:
        start = None
    known = {m.id for m in opts.config().municipalities}
    found = [] if start is None or municipality not in known else _found(opts, start - 60, start + 60, [municipality])
    if not any(i.id == ident for i in found):
        raise OperatorError(
            f"no incident {ident!r} on stack {opts.stack}",
            f"`lgcloud incident list --stack {opts.stack}` lists them with their ids (nothing was written)",
            EXIT_BAD_INPUT,
        )
    note_incident(opts.stack, ident, opts.args.text)
    opts.output.done(f"noted on {ident} ({system})")
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser("incident", help="unplanned outages seen by the offices' probes, with notes")
    actions = sub.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="incidents in a window (default the last 30d)")
    listing.add_argument("--window", default="30d", help="how far back, e.g. 1h or 30d")
    listing.add_argument("--municipality", action="append", help="only this municipality (id or code; repeatable)")
    listing.add_argument("--json", action="store_true", help="machine-readable")
    listing.set_defaults(run=run_list)
    note = actions.add_parser("note", parents=[common], help="record the cause or the action taken on an incident")
    note.add_argument("incident", metavar="ID", help="the incident's id, as `lgcloud incident list` shows it")
    note.add_argument("text", metavar="TEXT", help="the cause, the action taken")
    note.set_defaults(run=run_note)
    for action in (listing, note):
        action.add_argument("--prometheus", help="Prometheus URL (default: the monitor's, as configure set it up)")
