"""``lgcloud report sla``: the monthly service level report an operator takes to each 参加団体's
SLM meeting, in Japanese, as HTML and PDF: contractual availability against the agreement, the
raw figure beside it, daily charts (availability, p95 latency, error-budget burn), every incident
and every planned outage, the drills of the month (RTO, RPO), the backups, and the municipality's
use of the center with its cost share.

Everything is measured: Prometheus (probes, latency, backups, use), the state directory (planned
work, when the service began, incident notes, drill reports). A drill report's 住民票コード are
never read into it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..model.calendar import JST, intersect
from ..model.schema import SLA_SERVICES, Municipality, StackConfig, duration_seconds
from ..state.directory import state_dir
from ..state.slm import MaintenanceWindow, in_service_since, incident_notes, maintenance_windows
from .prometheus import Prometheus
from .sla import BACKUP_SLACK, MET, MISSED, NO_DATA, NOT_ENOUGH, judge_availability
from .slm import (
    Availability,
    Day,
    Incident,
    Probes,
    daily,
    eligible_spans,
    incidents,
    measure_availability,
    planned_spans,
)
from .utilization import FONT, VmUse
from .utilization import measure as measure_use

__all__ = ["MonthlyReport", "month_bounds", "monthly_reports", "write_reports"]

YEAR = 365 * 86400
VERDICTS = {MET: "達成", MISSED: "未達", NOT_ENOUGH: "データ不足", NO_DATA: "データなし"}
KINDS = {
    "operator": "作業",
    "up": "構成変更 (lgcloud up)",
    "configure": "設定 (lgcloud configure)",
    "restore": "リストア",
    "drill": "災害対策訓練",
    "failback": "切り戻し",
}
SCENARIOS = {
    "site-loss": "センター全体の被災",
    "db-loss": "データベース障害",
    "app-loss": "アプリケーションサーバー障害",
    "link-partition": "回線断",
    "data-corruption": "データ破損",
    "failback": "切り戻し",
}


@dataclass(frozen=True)
class SystemMonth:
    system: str
    name: str
    target_percent: float
    latency_target_ms: float
    month: Availability
    verdict: str  # 達成, 未達, データ不足, データなし
    why: str
    p95_ms: float | None
    days: list[Day]


@dataclass(frozen=True)
class DrillResult:
    scenario: str
    started: float
    passed: bool
    rto_seconds: float | None
    rto_target_seconds: float
    rpo_seconds: float
    rpo_target_seconds: float
    lost_writes: int


@dataclass(frozen=True)
class BackupStatus:
    newest_age_seconds: float | None  # at the end of the month
    worst_age_seconds: float | None  # over the month
    goal_seconds: float


@dataclass(frozen=True)
class Usage:
    cost_by_allocation: float
    cost_by_use: float
    vms: list[VmUse]


@dataclass(frozen=True)
class MonthlyReport:
    stack: str
    municipality: str
    name: str
    code: str
    month: str  # YYYY-MM
    start: float
    end: float  # the end of the month, or now for the current one
    complete: bool
    in_service_since: float | None
    systems: list[SystemMonth]
    incidents: list[Incident]
    planned: list[MaintenanceWindow]
    drills: list[DrillResult]
    backup: BackupStatus
    usage: Usage | None
    generated: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def month_bounds(stack: str, month: str, now: float | None = None) -> tuple[float, float, float]:
    """The month's start, where its measurement ends (now, for the current month) and its end.
    A month in the future, or before anything of the stack was recorded, is refused (exit 2)."""
    now = time.time() if now is None else now
    if not re.fullmatch(r"\d{4}-\d{2}", month) or not 1 <= int(month[5:]) <= 12:
        raise OperatorError(f"--month: not a month, write YYYY-MM such as 2026-12 (got {month!r})", "", EXIT_BAD_INPUT)
    year, number = int(month[:4]), int(month[5:])
    first = dt.datetime(year, number, 1, tzinfo=JST)
    following = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=JST)
    start, end = first.timestamp(), following.timestamp()
    if start > now:
        this = dt.datetime.fromtimestamp(now, JST)
        raise OperatorError(
            f"--month {month} has not begun (it is {this:%Y-%m} in Japan)",
            f"report on {this:%Y-%m} or an earlier month",
            EXIT_BAD_INPUT,
        )
    records = [*in_service_since(stack).values(), *(w.start for w in maintenance_windows(stack))]
    if not records or end <= min(records):
        since = f"its first record is of {dt.datetime.fromtimestamp(min(records), JST):%Y-%m-%d}" if records else ""
        raise OperatorError(
            f"stack {stack} did not exist in {month}" + (f": {since}" if since else ": nothing of it is recorded"),
            "report on a month the stack was in service (`lgcloud maintenance list` shows its history)",
            EXIT_BAD_INPUT,
        )
    return start, min(end, now), end


def _drills(stack: str, start: float, end: float, municipality: str) -> list[DrillResult]:
    """The drills of the month that acted on `municipality`, from their reports (figures only)."""
    found = []
    for path in sorted((state_dir(stack) / "drills").glob("*/report.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not start <= float(report.get("started", 0)) < end:
            continue
        for m in report.get("municipalities", []):
            if m.get("id") == municipality:
                found.append(
                    DrillResult(
                        scenario=report["scenario"],
                        started=float(report["started"]),
                        passed=bool(m["passed"]),
                        rto_seconds=m.get("rto_seconds"),
                        rto_target_seconds=float(m["targets"]["rto_seconds"]),
                        rpo_seconds=float(m["rpo_seconds"]),
                        rpo_target_seconds=float(m["targets"]["rpo_seconds"]),
                        lost_writes=int(m["lost_writes"]),
                    )
                )
    return found


def monthly_reports(
    cfg: StackConfig, prometheus: Prometheus, served: tuple[str, ...], month: str, chosen: list[Municipality]
) -> list[MonthlyReport]:
    """Every figure of the month for each chosen municipality, asked of Prometheus once for all."""
    start, end, month_end = month_bounds(cfg.stack, month)
    complete = end == month_end
    windows, since = maintenance_windows(cfg.stack), in_service_since(cfg.stack)
    now = time.time()
    ids = [m.id for m in chosen]
    seconds = int(end - start)
    match = f'municipality=~"{"|".join(ids)}"'
    month_p95 = Probes.over(seconds).p95.format(match=match, range=f"[{seconds}s] @ {int(end)}")
    age = "municipality:backup_age_seconds:min"
    # Before its first backup a municipality's age counts from 1970: not an age of any backup.
    worst_expr = f"max_over_time(({age} < {YEAR})[{seconds}s:5m] @ {int(end)})"

    def by(expr: str, *keys: str) -> dict[tuple[str, ...], float]:
        return {tuple(labels.get(k, "") for k in keys): v for labels, v in prometheus.query(expr)}

    # Prometheus answers side by side: the month's figures are asked at once.
    with ThreadPoolExecutor(4) as pool:
        months_asked = pool.submit(measure_availability, cfg, prometheus, served, start, end, windows, since, chosen)
        days_asked = pool.submit(daily, cfg, prometheus, served, start, end, windows, since, chosen)
        notes = incident_notes(cfg.stack)
        found_asked = pool.submit(incidents, cfg, prometheus, served, start, end, windows, since, notes, chosen)
        use_asked = pool.submit(measure_use, cfg, prometheus, f"{seconds}s", end)
        p95 = by(f"1000 * max by (municipality, system) ({month_p95})", "municipality", "system")
        newest = by(f"{age} @ {int(end)}", "municipality")
        worst = by(worst_expr, "municipality")
        months = {(a.municipality, a.system): a for a in months_asked.result()}
        days, found, use = days_asked.result(), found_asked.result(), use_asked.result()
    measured_use = any(v.cpu_avg_vcpus is not None for v in use.vms)
    goal = BACKUP_SLACK * duration_seconds(cfg.backup.interval)
    reports = []
    for m in chosen:
        systems = []
        for system in m.services:
            a = months.get((m.id, system))
            if a is None:
                continue
            # The budget and the share measured are the whole month's, also while it runs.
            planned_here = planned_spans(windows, m.id, cfg.slm.drills_are_planned, now)
            whole = sum(b - a0 for a0, b in eligible_spans(cfg, m, system, start, month_end, planned_here))
            a = replace(a, service_seconds=max(whole, a.measured_seconds))
            target = cfg.sla_for(m, system)
            status, why = judge_availability(a, cfg.slm.minimum_data_percent)
            systems.append(
                SystemMonth(
                    system,
                    SLA_SERVICES.get(system, system),
                    target.availability_percent,
                    target.latency_p95_ms,
                    a,
                    VERDICTS.get(status, status),
                    why,
                    p95.get((m.id, system)),
                    days.get((m.id, system), []),
                )
            )
        share = next((c for c in use.cost if c.municipality == m.id), None)
        planned = [
            w
            for w in windows
            if w.covers(m.id) and intersect([(w.start, w.end if w.end is not None else end)], start, end)
        ]
        reports.append(
            MonthlyReport(
                stack=cfg.stack,
                municipality=m.id,
                name=m.name,
                code=m.code,
                month=month,
                start=start,
                end=end,
                complete=complete,
                in_service_since=since.get(m.id),
                systems=systems,
                incidents=[i for i in found if i.municipality == m.id],
                planned=planned,
                drills=_drills(cfg.stack, start, end, m.id),
                backup=BackupStatus(newest.get((m.id,)), worst.get((m.id,)), goal),
                usage=Usage(share.by_allocation, share.by_use, [v for v in use.vms if v.municipality == m.id])
                if share and measured_use
                else None,
            )
        )
    return reports


# --- writing -----------------------------------------------------------------------------------


def _jst(at: float | None, form: str = "%Y-%m-%d %H:%M") -> str:
    return "—" if at is None else dt.datetime.fromtimestamp(at, JST).strftime(form)


def _pct(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f} %"


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:,.1f} 分"


def _age(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 3600:,.1f} 時間"


def _title(r: MonthlyReport) -> str:
    year, month = int(r.month[:4]), int(r.month[5:])
    return f"{r.name} 御中　サービスレベル月次報告書（{year}年{month}月）"


def tables(r: MonthlyReport) -> list[tuple[str, list[str], list[list[str]], str]]:
    """Each section of the report as (heading, columns, rows, note): one content for HTML and PDF."""
    summary = [
        [
            f"{s.name} ({s.system})",
            f"{s.target_percent:g} %",
            _pct(s.month.contractual_percent),
            _pct(s.month.raw_percent),
            _minutes(s.month.downtime_seconds),
            _minutes(s.month.budget_left_seconds),
            f"{s.latency_target_ms:g} ms" + ("" if s.p95_ms is None else f" / {s.p95_ms:,.0f} ms"),
            s.verdict,
        ]
        for s in r.systems
    ]
    outages = [
        [
            i.id,
            i.system,
            _jst(i.start, "%m-%d %H:%M:%S"),
            "継続中" if i.end is None else _jst(i.end, "%m-%d %H:%M:%S"),
            _minutes(i.seconds),
            _minutes(i.counted_seconds),
            ", ".join(i.alerts) or "なし",
            " / ".join(i.notes) or "（未記入: lgcloud incident note）",
        ]
        for i in r.incidents
    ]
    planned = [
        [
            str(w.id),
            KINDS.get(w.kind, w.kind),
            w.reason,
            w.by,
            _jst(w.start),
            "継続中" if w.end is None else _jst(w.end),
            _minutes((w.end or r.end) - w.start),
        ]
        for w in r.planned
    ]
    drills = [
        [
            SCENARIOS.get(d.scenario, d.scenario),
            _jst(d.started),
            "復旧せず" if d.rto_seconds is None else f"{d.rto_seconds:.1f} 秒（目標 {d.rto_target_seconds:g} 秒）",
            f"{d.rpo_seconds:.1f} 秒（目標 {d.rpo_target_seconds:g} 秒）",
            str(d.lost_writes),
            "達成" if d.passed else "未達",
        ]
        for d in r.drills
    ]
    b = r.backup
    backup = [[_age(b.newest_age_seconds), _age(b.worst_age_seconds), _age(b.goal_seconds)]]
    usage = (
        [
            [
                v.vm,
                v.site,
                f"{v.allocated_vcpus:g} / {v.allocated_memory_mb} MiB",
                "—" if v.cpu_avg_vcpus is None else f"{v.cpu_avg_vcpus:.3f} / {v.cpu_peak_vcpus or 0:.3f}",
                "—" if v.memory_avg_mb is None else f"{v.memory_avg_mb:,.0f} / {v.memory_peak_mb or 0:,.0f} MiB",
            ]
            for v in r.usage.vms
        ]
        if r.usage
        else []
    )
    cost = (
        f"費用按分: 割当による {100 * r.usage.cost_by_allocation:.1f} %、実使用による {100 * r.usage.cost_by_use:.1f} %"
        if r.usage
        else "この期間の利用状況は計測されていません（lgcloud exporter が停止していた）"
    )
    service = (
        f"供用開始 {_jst(r.in_service_since)}。稼働率（契約）はサービス時間内の計画停止を除いた時間に対する値、"
        "実測はすべてのプローブに対する値です。"
    )
    return [
        (
            "1. サービスレベルの概要",
            [
                "業務",
                "目標稼働率",
                "稼働率（契約）",
                "稼働率（実測）",
                "障害時間",
                "エラーバジェット残",
                "応答時間 目標/p95",
                "判定",
            ],
            summary,
            service,
        ),
        (
            "3. 障害（計画外停止）",
            ["ID", "業務", "開始", "終了", "時間", "計上", "アラート", "原因・対応"],
            outages,
            "",
        ),
        ("4. 計画停止", ["番号", "種別", "内容", "実施者", "開始", "終了", "時間"], planned, ""),
        ("5. 災害対策訓練", ["訓練", "実施日時", "RTO", "RPO", "失われた書込", "判定"], drills, ""),
        ("6. バックアップ", ["最新バックアップの経過", "月内の最大", "目標（間隔の1.5倍以内）"], backup, ""),
        (
            "7. 利用状況と費用按分",
            ["VM", "拠点", "割当 vCPU / メモリ", "CPU 平均 / ピーク", "メモリ 平均 / ピーク"],
            usage,
            cost,
        ),
    ]


def _chart(r: MonthlyReport, path: Path) -> None:
    """Daily availability, p95 latency and error-budget burn of each system: one picture."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    if any(f.name == FONT for f in font_manager.fontManager.ttflist):
        plt.rcParams["font.family"] = FONT
    fig, (available, latency, burn) = plt.subplots(3, 1, figsize=(8.2, 8.4), sharex=True)
    lowest = 99.0
    for s in r.systems:
        x = [d.day.day for d in s.days]
        y = [d.contractual_percent for d in s.days]
        shown = [v for v in y if v is not None]
        lowest = min([lowest, *shown])
        available.plot(x, [float("nan") if v is None else v for v in y], marker="o", ms=3, label=s.name)
        latency.plot(x, [float("nan") if d.p95_ms is None else d.p95_ms for d in s.days], marker="o", ms=3)
        spent, total = [], 0.0
        for d in s.days:
            total += d.downtime_seconds
            spent.append(total / 60)
        line = burn.plot(x, spent, marker="o", ms=3)[0]
        burn.axhline(s.month.budget_seconds / 60, color=line.get_color(), ls=":", lw=1)
    if r.systems:
        available.axhline(r.systems[0].target_percent, color="#c0392b", ls="--", lw=1, label="目標")
        latency.axhline(r.systems[0].latency_target_ms, color="#c0392b", ls="--", lw=1, label="目標")
    available.set_ylim(max(0.0, lowest - 0.5), 100.05)
    available.set_ylabel("稼働率（契約, %）")
    available.set_title("日別の稼働率")
    available.legend(fontsize=8, loc="lower left")
    latency.set_ylabel("p95 応答時間 (ms)")
    latency.set_title("日別の応答時間（95パーセンタイル）")
    burn.set_ylabel("累積障害時間（分）")
    burn.set_title("エラーバジェットの消費（点線: 月の予算）")
    burn.set_xlabel(f"{int(r.month[5:])}月の日")
    last = (dt.datetime.fromtimestamp(r.start, JST) + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    for ax in (available, latency, burn):
        ax.grid(alpha=0.3)
        ax.set_xlim(0.5, last.day + 0.5)
        ax.set_xticks(range(1, last.day + 1, 2))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _html(r: MonthlyReport, chart: Path) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("lgcloud.observe", "templates"), autoescape=select_autoescape())
    picture = base64.b64encode(chart.read_bytes()).decode()
    period = f"{_jst(r.start)} 〜 {_jst(r.end)}" + ("" if r.complete else "（集計中）")
    return env.get_template("sla-report.html").render(
        title=_title(r), report=r, period=period, sections=tables(r), chart=picture, generated=_jst(r.generated)
    )


def _font() -> str:
    """The Japanese font for the PDF, registered once, found where matplotlib finds it."""
    from matplotlib import font_manager
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if FONT not in pdfmetrics.getRegisteredFontNames():
        path = font_manager.findfont(font_manager.FontProperties(family=FONT), fallback_to_default=False)
        pdfmetrics.registerFont(TTFont(FONT, path))
    return FONT


def _pdf(r: MonthlyReport, chart: Path, path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font = _font()
    title = ParagraphStyle("title", fontName=font, fontSize=14, leading=20, spaceAfter=4)
    heading = ParagraphStyle("heading", fontName=font, fontSize=11, leading=16, spaceBefore=8, spaceAfter=4)
    body = ParagraphStyle("body", fontName=font, fontSize=8, leading=11)
    cell = ParagraphStyle("cell", fontName=font, fontSize=6.5, leading=8.5)
    width = A4[0] - 30 * mm
    period = f"{_jst(r.start)} 〜 {_jst(r.end)}" + ("" if r.complete else "（集計中）")
    story: list[Any] = [
        Paragraph(_title(r), title),
        Paragraph(f"地方公共団体コード {r.code}　対象期間 {period}　スタック {r.stack}", body),
    ]
    sections = tables(r)
    for number, (name, columns, rows, note) in enumerate(sections):
        story.append(Paragraph(name, heading))
        if rows:
            data = [[Paragraph(c, cell) for c in columns]] + [[Paragraph(str(v), cell) for v in row] for row in rows]
            table = Table(data, colWidths=[width / len(columns)] * len(columns), repeatRows=1)
            table.setStyle(
                TableStyle(
                    [
                        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9aa5b1")),
                        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef5")),
                        ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ]
                )
            )
            story.append(table)
        else:
            story.append(Paragraph("該当なし", body))
        if note:
            story.append(Spacer(1, 3))
            story.append(Paragraph(note, body))
        if number == 0:
            story.append(Paragraph("2. 日別の推移", heading))
            story.append(Image(str(chart), width=width * 0.82, height=width * 0.82 * 8.4 / 8.2))
    story.append(Spacer(1, 6))
    story.append(Paragraph(f"作成 {_jst(r.generated)}（lgcloud report sla）", body))
    SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=_title(r),
        author="lgcloud",
    ).build(story)


def _write(r: MonthlyReport, out: Path) -> Path:
    stem = out / f"sla-{r.month}-{r.municipality}"
    chart = stem.with_suffix(".png")
    _chart(r, chart)
    stem.with_suffix(".html").write_text(_html(r, chart), encoding="utf-8")
    _pdf(r, chart, stem.with_suffix(".pdf"))
    stem.with_suffix(".json").write_text(
        json.dumps(r.to_json(), indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    return stem.with_suffix(".pdf")


def write_reports(reports: list[MonthlyReport], out: Path) -> list[Path]:
    """For each report: ``sla-<month>-<municipality>.html`` (chart embedded), ``.pdf``, ``.png``
    and ``.json`` in `out`, drawn on every core. Returns the PDFs."""
    out.mkdir(parents=True, exist_ok=True)
    if len(reports) < 2:
        return [_write(r, out) for r in reports]
    with ProcessPoolExecutor(min(len(reports), os.cpu_count() or 1), mp_context=get_context("fork")) as pool:
        return list(pool.map(_write, reports, [out] * len(reports)))
