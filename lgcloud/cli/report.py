"""``lgcloud report utilization``: use against allocation and capacity, dedicated servers against
the shared pool, and the cost split; HTML with PNG charts, and JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..observe.prometheus import Prometheus
from ..observe.utilization import write_report
from ..state.facts import lab_facts
from .options import Options

__all__ = ["add"]


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def run(opts: Options) -> int:
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
        "report", parents=[common], help="write a report: `utilization` (use against allocation and capacity)"
    )
    sub.add_argument("kind", choices=["utilization"], help="which report")
    sub.add_argument("--window", default="1h", help="period measured, e.g. 30m, 1h, 1d (default 1h)")
    sub.add_argument("--out", default="reports", help="folder for the HTML report, its charts and JSON")
    sub.add_argument("--prometheus", help="Prometheus URL (default: the monitor's, as the last configure set it up)")
    sub.set_defaults(run=run)
