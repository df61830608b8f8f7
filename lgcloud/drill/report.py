"""A drill's report: the JSON document and a Markdown page an operator reads after the drill."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ..keys import state_dir

__all__ = ["markdown", "write"]

JST = dt.timezone(dt.timedelta(hours=9))


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, JST).strftime("%H:%M:%S.%f")[:-3]


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def markdown(report: dict) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    day = dt.datetime.fromtimestamp(report["started"], JST).strftime("%Y-%m-%d %H:%M:%S JST")
    lines = [
        f"# Drill `{report['scenario']}` on stack `{report['stack']}`: {verdict}",
        "",
        f"{report['description']}.",
        "",
        f"Started {day}; injection at {_clock(report['injection'])}; "
        f"finished {report['finished'] - report['started']:.1f} s after the start.",
        "",
        "## Per municipality",
        "",
        "| municipality | replication | RTO | target | RPO | target | acknowledged | lost | integrity | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["municipalities"]:
        t = m["targets"]
        lines.append(
            f"| {m['name']} ({m['code']}) | {m['replication']} | {_seconds(m['rto_seconds'])} | "
            f"{t['rto_seconds']:g} s | {m['rpo_seconds']:.2f} s | {t['rpo_seconds']:g} s | "
            f"{m['acknowledged_writes']} of {m['attempts']} | {m['lost_writes']} | "
            f"{'ok' if m['integrity']['ok'] else 'DIFFERS'} | {'met' if m['passed'] else 'MISSED'} |")
    problems = [f"- {m['id']}: {p}" for m in report["municipalities"] for p in m["problems"]]
    problems += [f"- {e}" for e in report["errors"]]
    if problems:
        lines += ["", "## Problems", "", *problems]
    lines += ["", "## Timeline (JST)", "", "| at | who | step | took | detail |", "|---|---|---|---|---|"]
    for s in sorted(report["timeline"], key=lambda s: s["at"]):
        took = f"{s['seconds']:.2f} s" if s["seconds"] else ""
        lines.append(f"| {_clock(s['at'])} | {s['municipality']} | {s['name']} | {took} | {s['detail']} |")
    lines += [
        "", "## How it was measured", "",
        "- RTO: the longest time an office went without an acknowledged write, counted from the injection "
        "(the clerk on the office terminal registers a resident every 0.2 s through the gateway).",
        "- RPO: acknowledged writes missing from the database that serves afterwards, compared row by row "
        "with the clerk's log; in seconds, how far before the injection the oldest lost write was acknowledged.",
        "- Integrity: count and MD5 of every row of `residents`, ordered by 住民票コード, on both sides before "
        "the drill; afterwards the rows from before must be unchanged, and both sides equal where both run.",
        "", "## State after the drill", "", report["state_after"], "",
    ]
    return "\n".join(lines)


def write(report: dict, directory: Path | None = None) -> Path:
    """Write report.json and report.md; keep the latest result per scenario for the exporter."""
    drills = state_dir(report["stack"]) / "drills"
    stamp = dt.datetime.fromtimestamp(report["started"], dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    directory = Path(directory) if directory else drills / f"{stamp}-{report['scenario']}"
    directory.mkdir(parents=True, exist_ok=True)
    document = json.dumps(report, indent=2, ensure_ascii=False)
    (directory / "report.json").write_text(document, encoding="utf-8")
    (directory / "report.md").write_text(markdown(report), encoding="utf-8")
    drills.mkdir(parents=True, exist_ok=True)
    latest = drills / f"latest-{report['scenario']}.json"
    latest.with_suffix(".tmp").write_text(document, encoding="utf-8")
    latest.with_suffix(".tmp").replace(latest)
    return directory
