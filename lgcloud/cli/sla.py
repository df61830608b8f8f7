"""``lgcloud sla``: every SLA target against the lab's Prometheus (exit 1: missed, 3: not evaluable)."""

from __future__ import annotations

import argparse
import datetime as dt

from ..model.calendar import JST
from ..model.schema import SLA_SERVICES
from ..observe.prometheus import Prometheus
from ..observe.sla import (
    DATABASE,
    MET,
    MISSED,
    NO_DATA,
    NOT_ENOUGH,
    NOT_SERVED,
    UNKNOWN,
    UNREACHABLE,
    SlaReport,
    check_request,
    evaluate,
    probed_systems,
)
from ..observe.slm import Incident
from ..state.facts import lab_facts
from .options import Options

__all__ = ["add", "asked_prometheus", "show_incidents"]

_COLOURS = {
    MET: "green",
    MISSED: "red",
    NO_DATA: "yellow",
    NOT_ENOUGH: "yellow",
    UNREACHABLE: "red",
    UNKNOWN: "magenta",
    NOT_SERVED: "dim",
}


COLUMNS = (
    "municipality",
    "system",
    "objective",
    "window",
    "target",
    "measured",
    "raw",
    "status",
    "margin",
    "budget left",
    "note",
)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{value:.3f} %"
    return f"{value:,.0f} {unit}" if abs(value) >= 100 or value == int(value) else f"{value:.2f} {unit}"


def _show(opts: Options, report: SlaReport) -> None:
    """The table an SLM meeting reads; notes on stderr."""
    rows = []
    for r in report.evaluations:
        if r.status == NOT_SERVED:
            continue
        margin = "—" if r.margin is None else ("+" if r.margin >= 0 else "") + _number(r.margin, r.unit)
        rows.append(
            (
                f"{r.name} {r.municipality}" if r.name else r.municipality,
                "データベース db" if r.system == DATABASE else f"{SLA_SERVICES.get(r.system, r.system)} {r.system}",
                r.objective,
                r.window
                if r.objective in ("availability", "latency_p95", "rpo")
                else {"rto": "last"}.get(r.objective, "now"),
                _number(r.target, r.unit),
                _number(r.measured, r.unit),
                _number(r.raw_percent, r.unit) if r.objective == "availability" else "",
                f"[{_COLOURS[r.status]}]{r.status}[/]",
                margin,
                "" if r.budget_left_minutes is None else f"{r.budget_left_minutes:,.1f} min",
                "" if r.status == UNREACHABLE else r.detail,
            )
        )
    opts.output.table(
        f"SLA of stack {report.stack} ({report.prometheus})",
        COLUMNS,
        rows,
        right=("target", "measured", "raw", "margin", "budget left"),
        caption="availability: contractual (service hours, in service, planned work excluded); raw: every probe",
    )
    show_incidents(opts, report.incidents, f"incidents in the window ({len(report.incidents)})")
    for w in report.orphaned_windows:
        opts.output.fail(
            f"maintenance window {w.id} ({w.reason}) is still open, but the {w.kind} that opened it is gone: "
            "it keeps excluding time from contractual availability",
            f"close it: `lgcloud maintenance end --stack {report.stack} --id {w.id}`",
        )
    unreachable = next((r.detail for r in report.evaluations if r.status == UNREACHABLE), "")
    if unreachable:
        opts.output.fail(unreachable, f"is stack {report.stack} up and configured (`make up`)?")
    unserved = sorted({f"{r.municipality}/{r.system}" for r in report.evaluations if r.status == NOT_SERVED})
    if unserved:
        opts.output.note(f"not evaluated (the lab runs no service for them): {', '.join(unserved)}")
    counts = {s: sum(r.status == s for r in report.evaluations) for s in _COLOURS if s != NOT_SERVED}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    opts.output.note(f"{'✓' if report.exit_code == 0 else '✗'} {summary}")


def show_incidents(opts: Options, found: list[Incident], title: str) -> None:
    """The incidents as an operator reads them: one line each, with the alert that fired."""
    if not found:
        opts.output.note(f"{title}: none")
        return
    opts.output.table(
        title,
        ("id", "municipality", "system", "start (JST)", "minutes", "counted", "alerts", "notes"),
        [
            (
                i.id,
                i.municipality,
                i.system,
                dt.datetime.fromtimestamp(i.start, JST).strftime("%Y-%m-%d %H:%M:%S"),
                f"{i.seconds / 60:.1f}" + ("" if i.end is not None else " (ongoing)"),
                f"{i.counted_seconds / 60:.1f}",
                ", ".join(i.alerts) or "none fired",
                " / ".join(i.notes),
            )
            for i in found
        ],
        right=("minutes", "counted"),
    )


def asked_prometheus(opts: Options, stack: str) -> tuple[Prometheus, tuple[str, ...]]:
    """The Prometheus a verb asks (the monitor's, as the last configure set it up, or --prometheus)
    and the systems the lab serves (for another Prometheus: those it holds office probes of)."""
    if opts.args.prometheus:
        prometheus = Prometheus(opts.args.prometheus)
        return prometheus, probed_systems(prometheus)
    facts = lab_facts(stack)
    return Prometheus(facts.prometheus_url), facts.probed_systems


def run(opts: Options) -> int:
    cfg = opts.config()
    check_request(cfg, opts.args.window, opts.args.municipality or ())
    prometheus, served = asked_prometheus(opts, cfg.stack)
    report = evaluate(cfg, prometheus, served, opts.args.window, opts.args.municipality or ())
    if opts.flag("json"):
        opts.output.json(report.to_json())
    else:
        _show(opts, report)
    return report.exit_code


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser(
        "sla",
        parents=[common],
        help="evaluate every SLA target against the lab's Prometheus (exit 1: missed, 3: some target not evaluable)",
    )
    sub.add_argument("--window", help="period to evaluate over, e.g. 1h or 30d (default: each target's own)")
    sub.add_argument("--municipality", action="append", help="only this municipality (id or code; repeatable)")
    sub.add_argument(
        "--prometheus",
        help="Prometheus URL (default: the monitor's, as the last configure set it "
        "up); the systems evaluated are then those it holds office probes of",
    )
    sub.add_argument("--json", action="store_true", help="machine-readable results")
    sub.set_defaults(run=run)
