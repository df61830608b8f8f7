"""``lgcloud report utilization``: use against allocation and capacity, dedicated servers against
the shared pool, and the cost split; HTML with PNG charts, and JSON.

``lgcloud report sla --month YYYY-MM``: the monthly service level report for each 参加団体, in
Japanese, HTML and PDF (``lgcloud.observe.slm_report``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..observe.prometheus import Prometheus
from ..observe.slm_report import month_bounds, monthly_reports, write_reports
from ..observe.utilization import write_report
from ..state.facts import lab_facts
from .options import Options
from .sla import asked_prometheus

__all__ = ["add"]


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def run(opts: Options) -> int:
    return _sla(opts) if opts.args.kind == "sla" else _utilization(opts)


def _sla(opts: Options) -> int:
    cfg = opts.config()
    if not opts.args.month:
        raise OperatorError("report sla needs --month YYYY-MM", "e.g. --month 2026-12", EXIT_BAD_INPUT)
    chosen = [cfg.municipality_named(m) for m in opts.args.municipality or ()] or list(cfg.municipalities)
    month_bounds(cfg.stack, opts.args.month)  # refused before Prometheus is asked, and nothing written
    prometheus, served = asked_prometheus(opts, cfg.stack)
    with opts.output.err.status(f"measuring {opts.args.month} for {len(chosen)} municipalities …"):
        reports = monthly_reports(cfg, prometheus, served, opts.args.month, chosen)
    with opts.output.err.status("writing the reports …"):
        written = write_reports(reports, Path(opts.args.out))
    for r in reports:
        verdicts = ", ".join(f"{s.system} {s.verdict}" for s in r.systems)
        opts.output.note(
            f"{r.name} {r.municipality}: {verdicts}; {len(r.incidents)} incidents, {len(r.planned)} planned"
        )
    for path in written:
        opts.output.data.print(str(path))
    return 0


def _utilization(opts: Options) -> int:
    cfg = opts.config()
    url = opts.args.prometheus or lab_facts(cfg.stack).prometheus_url
    out = Path(opts.args.out)
    report = write_report(cfg, Prometheus(url), out, opts.args.window)
    dedicated, shared = report.consolidation.dedicated_total, report.consolidation.shared
    opts.output.done(
        f"dedicated servers: {dedicated.vcpus} vCPU at {_percent(dedicated.cpu_utilisation)} CPU use; "
        f"shared pool: {shared.server.vcpus} vCPU at {_percent(shared.cpu_utilisation)}"
    )
    opts.output.data.print(str(out / "utilization.html"))
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser(
        "report",
        parents=[common],
        help="write a report: `utilization` (use against allocation and capacity), `sla` (the monthly SLM report)",
    )
    sub.add_argument("kind", choices=["utilization", "sla"], help="which report")
    sub.add_argument("--window", default="1h", help="utilization: period measured, e.g. 30m, 1h, 1d (default 1h)")
    sub.add_argument("--month", help="sla: the month reported on, YYYY-MM (JST); the current one runs until now")
    sub.add_argument(
        "--municipality", action="append", help="sla: only this municipality (id or code; repeatable; default all)"
    )
    sub.add_argument("--out", default="reports", help="folder for the reports (HTML, PDF for sla, charts and JSON)")
    sub.add_argument("--prometheus", help="Prometheus URL (default: the monitor's, as the last configure set it up)")
    sub.set_defaults(run=run)
