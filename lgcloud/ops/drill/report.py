"""A drill's report: typed results, their one JSON form, and a Markdown page an operator reads.

Reports go to ``.lgcloud/<stack>/drills/<time>-<scenario>/report.{json,md}``; the latest of each
scenario also to ``drills/latest-<scenario>.json``, which the exporter publishes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...state.directory import state_dir, write_atomic
from .runbook import Step

__all__ = ["DrillReport", "Integrity", "LinkageResult", "MunicipalityResult", "Targets", "markdown", "write"]

JST = dt.timezone(dt.timedelta(hours=9))


@dataclass(frozen=True)
class Targets:
    rto_seconds: float
    rpo_seconds: float


@dataclass
class Integrity:
    """Checksums (row count and MD5 of every row) before and after the drill."""

    before: dict[str, str]  # "at" (the instant), "primary", and "replica" unless failback
    kept_rows_after: str  # the rows from before, read again on the serving side afterwards
    ok: bool
    after_primary: str | None = None  # both sides afterwards, where both run
    after_replica: str | None = None


@dataclass
class MunicipalityResult:
    """One municipality's figures and verdict."""

    id: str
    code: str
    name: str
    replication: str
    rto_seconds: float | None  # None: the office was not served again
    rpo_seconds: float
    lost_writes: int
    lost_codes: list[str]
    acknowledged_writes: int
    attempts: int
    failed_attempts: int
    targets: Targets
    integrity: Integrity
    passed: bool
    problems: list[str]
    # Gaps without an acknowledged write longer than a second, (from, to) s after the injection
    outages: list[tuple[float, float]] = field(default_factory=list)
    primaries_seen: list[int] | None = None  # link-partition: the distinct counts sampled
    # data-corruption: writes acknowledged after the damage that the restore rolled back, by
    # 住民票コード, for the office to enter again (None where nothing is rolled back)
    rolled_back_codes: list[str] | None = None
    # failback: rows the fenced center primary held that the backup never received (asynchronous
    # replication), by 住民票コード, and the 0600 file in the state directory holding them
    unreplicated_codes: list[str] | None = None
    unreplicated_file: str | None = None
    # failback: the tenant's 情報提供等記録 only the fenced primary held, kept in the same file
    unreplicated_records: int | None = None

    def fail(self, problem: str) -> None:
        self.passed = False
        self.problems.append(problem)


@dataclass
class LinkageResult:
    """番号連携 watched through a drill (lgcloud.ops.drill.linkage)."""

    requester: str  # municipality ids
    provider: str
    attempts: int
    answered: int
    rto_seconds: float | None  # None: no query was answered again by the end of the drill
    rto_target_seconds: float
    lost_request_ids: list[str]  # answered, and missing from a side's 情報提供等記録
    passed: bool
    problems: list[str] = field(default_factory=list)


@dataclass
class DrillReport:
    scenario: str
    description: str
    stack: str
    started: float  # epoch seconds
    injection: float
    finished: float
    passed: bool
    errors: list[str]
    municipalities: list[MunicipalityResult]
    timeline: list[Step] = field(default_factory=list)
    state_after: str = ""
    linkage: LinkageResult | None = None  # 番号連携 watched through the drill (site-loss)

    def to_json(self) -> dict[str, Any]:
        """The report's one JSON form (what ``--json`` prints and report.json holds)."""
        document = asdict(self)
        for m in document["municipalities"]:
            if m["primaries_seen"] is None:
                del m["primaries_seen"]
            for key in ("after_primary", "after_replica"):
                if m["integrity"][key] is None:
                    del m["integrity"][key]
        return document


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, JST).strftime("%H:%M:%S.%f")[:-3]


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def markdown(report: DrillReport) -> str:
    verdict = "PASSED" if report.passed else "FAILED"
    day = dt.datetime.fromtimestamp(report.started, JST).strftime("%Y-%m-%d %H:%M:%S JST")
    lines = [
        f"# Drill `{report.scenario}` on stack `{report.stack}`: {verdict}",
        "",
        f"{report.description}.",
        "",
        f"Started {day}; injection at {_clock(report.injection)}; "
        f"finished {report.finished - report.started:.1f} s after the start.",
        "",
        "## Per municipality",
        "",
        "| municipality | replication | RTO | target | RPO | target | acknowledged | lost | integrity | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report.municipalities:
        t = m.targets
        lines.append(
            f"| {m.name} ({m.code}) | {m.replication} | {_seconds(m.rto_seconds)} | "
            f"{t.rto_seconds:g} s | {m.rpo_seconds:.2f} s | {t.rpo_seconds:g} s | "
            f"{m.acknowledged_writes} of {m.attempts} | {m.lost_writes} | "
            f"{'ok' if m.integrity.ok else 'DIFFERS'} | {'met' if m.passed else 'MISSED'} |"
        )
    rolled = [m for m in report.municipalities if m.rolled_back_codes is not None]
    if rolled:
        lines += ["", "## Rolled back: enter these again", ""]
        for m in rolled:
            codes = ", ".join(m.rolled_back_codes or []) or "none"
            lines.append(
                f"- {m.name} ({m.code}): {len(m.rolled_back_codes or [])} registration(s), 住民票コード {codes}"
            )
    kept = [m for m in report.municipalities if m.unreplicated_codes or m.unreplicated_records]
    if kept:
        lines += ["", "## Only on the fenced center primary: enter these again", ""]
        for m in kept:
            codes = ", ".join(m.unreplicated_codes or []) or "none"
            lines.append(
                f"- {m.name} ({m.code}): {len(m.unreplicated_codes or [])} row(s) the backup never received, "
                f"住民票コード {codes}; {m.unreplicated_records or 0} 情報提供等記録 of its tenant, kept beside "
                f"the chain; all in `{m.unreplicated_file}` (0600)"
            )
    if report.linkage is not None:
        k = report.linkage
        lines += [
            "",
            "## 番号連携",
            "",
            f"{k.requester}'s 税 asked {k.provider} for a moved person's income every second: "
            f"{k.answered} of {k.attempts} queries answered; RTO {_seconds(k.rto_seconds)} "
            f"(target {k.rto_target_seconds:g} s); {len(k.lost_request_ids)} answered queries missing "
            f"from either side's 情報提供等記録: {'met' if k.passed else 'MISSED'}.",
        ]
        lines += [f"- missing: request {r}" for r in k.lost_request_ids]
    problems = [f"- {m.id}: {p}" for m in report.municipalities for p in m.problems]
    problems += [f"- linkage: {p}" for p in (report.linkage.problems if report.linkage else [])]
    problems += [f"- {e}" for e in report.errors]
    if problems:
        lines += ["", "## Problems", "", *problems]
    lines += ["", "## Timeline (JST)", "", "| at | who | step | took | detail |", "|---|---|---|---|---|"]
    for s in sorted(report.timeline, key=lambda s: s.at):
        took = f"{s.seconds:.2f} s" if s.seconds else ""
        lines.append(f"| {_clock(s.at)} | {s.municipality} | {s.name} | {took} | {s.detail} |")
    lines += [
        "",
        "## How it was measured",
        "",
        "- RTO: the longest time an office went without an acknowledged write, counted from the injection "
        "(the clerk on the office terminal registers a resident every 0.2 s through the gateway); where the "
        "recovery rolls the data back (data-corruption), until the first write acknowledged after the runbook "
        "stopped the writes that the restored database holds.",
        "- RPO: acknowledged writes missing from the database that serves afterwards, compared row by row "
        "with the clerk's log; in seconds, how far before the injection the oldest lost write was acknowledged. "
        "Writes acknowledged after a damage and gone with the restore are listed as rolled back, not lost.",
        "- Integrity: count and MD5 of every row of `residents`, ordered by the row key, on both sides before "
        "the drill; afterwards the rows from before must be unchanged, and both sides equal where both run.",
        *(
            [
                "- 番号連携: a 税 clerk at the requester's office asks, every second through the gateway, for the "
                "income of a person who moved from the provider (所得照会, through the 中間サーバー and the broker); "
                "RTO as above over its answered queries; a query answered to the office and missing from either "
                "side's 情報提供等記録 afterwards is lost."
            ]
            if report.linkage is not None
            else []
        ),
        "",
        "## State after the drill",
        "",
        report.state_after,
        "",
    ]
    return "\n".join(lines)


def write(report: DrillReport, directory: Path | None = None) -> Path:
    """Write report.json and report.md; keep the latest result per scenario for the exporter."""
    drills = state_dir(report.stack) / "drills"
    stamp = dt.datetime.fromtimestamp(report.started, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = Path(directory) if directory else drills / f"{stamp}-{report.scenario}"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    document = json.dumps(report.to_json(), indent=2, ensure_ascii=False)
    # 0600: a report lists 住民票コード to be entered again.
    write_atomic(directory / "report.json", document, 0o600)
    write_atomic(directory / "report.md", markdown(report), 0o600)
    drills.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(drills / f"latest-{report.scenario}.json", document, 0o600)
    return directory
