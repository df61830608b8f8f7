"""``lgcloud sla``: every SLA target of the stack against what the lab's Prometheus measured.

Per municipality and business system (targets from the stack config, ``lgcloud:sla``):

- availability: the share of the office probes (blackbox exporter on each terminal) through
  LGWAN or IP-VPN, that succeeded over the window (what a clerk sees);
- p95 latency: the 95th percentile of those probes' durations over the window;
- RPO: the worst replication lag over the window (0 while the primary streams synchronously);
- RTO: the recovery time of the municipality in the last drill of each scenario (the worst);
- backup age: how old the municipality's newest backup in the repository is now, against one and
  a half backup intervals (``lgcloud:backup``): the backups a restore depends on are being taken.

A target that cannot be evaluated (no samples, Prometheus unreachable, a municipality Prometheus
knows but the stack does not) is reported as such, never as met::

    lgcloud sla --stack dev --window 1h
    lgcloud sla --json | jq '.results[] | select(.status != "met")'
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_EVALUATED, OperatorError
from ..model.naming import DRILL_SYSTEM
from ..model.schema import LINKAGE, Municipality, StackConfig, duration_seconds
from ..state.slm import MaintenanceWindow, in_service_since, incident_notes, maintenance_windows
from .prometheus import Prometheus, PrometheusUnreachable
from .slm import Availability, Incident, Probes, incidents, measure_availability

__all__ = [
    "DATABASE",
    "MET",
    "MISSED",
    "NOT_ENOUGH",
    "NOT_SERVED",
    "NO_DATA",
    "UNKNOWN",
    "UNREACHABLE",
    "Evaluation",
    "Measurements",
    "SlaReport",
    "check_request",
    "evaluate",
    "judge",
    "judge_all",
    "judge_availability",
    "measure",
    "probed_systems",
    "queries",
]

MET, MISSED, NO_DATA, NOT_ENOUGH, UNREACHABLE, NOT_SERVED, UNKNOWN = (
    "met",
    "missed",
    "no data",
    "not enough data",
    "Prometheus unreachable",
    "not served",
    "unknown municipality",
)
# Objective -> (unit, True when a higher measurement is better).
OBJECTIVES = {
    "availability": ("%", True),
    "latency_p95": ("ms", False),
    "rpo": ("s", False),
    "rto": ("s", False),
    "backup_age": ("s", False),
}
# The backup objective is the municipality's database's, shared by its systems: one row, this "system".
DATABASE = "db"
# How late a scheduled backup may be before the objective is missed (BackupTooOld in monitoring/rules).
BACKUP_SLACK = 1.5


@dataclass(frozen=True)
class Evaluation:
    """One target of one municipality's system, and what the lab measured against it."""

    municipality: str  # id
    name: str
    system: str
    objective: str
    unit: str
    window: str
    target: float | None
    status: str
    measured: float | None = None
    margin: float | None = None  # headroom in the target's unit; negative when missed
    detail: str = ""
    # Availability only: every probe of the window, the error budget left, the share measured.
    raw_percent: float | None = None
    budget_left_minutes: float | None = None
    coverage_percent: float | None = None


def judge(objective: str, target: float, measured: float | None) -> tuple[str, float | None]:
    """Met or missed, and the margin (how far inside the target; negative outside).

    >>> status, margin = judge("availability", 99.9, 99.95)
    >>> status, round(margin, 6)
    ('met', 0.05)
    >>> judge("rpo", 0, None)
    ('no data', None)
    """
    if measured is None:
        return NO_DATA, None
    higher_is_better = OBJECTIVES[objective][1]
    margin = measured - target if higher_is_better else target - measured
    return (MET if margin >= 0 else MISSED), margin


def queries(window: str, municipalities: Iterable[str] = ()) -> dict[str, str]:
    """The PromQL of each measurement over `window`, one series per municipality (and system)
    (of those named, for what reads the probes)."""
    match = f'municipality=~"{"|".join(sorted(municipalities))}"' if municipalities else 'municipality!=""'
    return {
        # Which offices probe now (availability itself: lgcloud.observe.slm).
        "probing": 'count by (municipality, system) (last_over_time(probe_success{job="probe"}[1h]))',
        "latency_p95": "1000 * max by (municipality, system) ({})".format(
            Probes.over(duration_seconds(window)).p95.format(match=match, range=f"[{window}]")
        ),
        "rpo": f"max by (municipality) (max_over_time(municipality:postgresql_rpo_seconds:max[{window}]))",
        "rto": "max by (municipality) (lgcloud_drill_rto_seconds)",
        "linkage_rto": "max by (municipality) (lgcloud_drill_linkage_rto_seconds)",
        "backup_age": "min by (municipality) (municipality:backup_age_seconds:min)",
    }


def probed_systems(prometheus: Prometheus) -> tuple[str, ...]:
    """The systems that Prometheus holds office probes of: what the lab serves, as it measured it."""
    return tuple(
        sorted(
            {
                labels.get("system", "")
                # probed within the last hour: a system a drill has just stopped is still served
                for labels, _ in prometheus.query('count by (system) (last_over_time(probe_success{job="probe"}[1h]))')
            }
            - {""}
        )
    )


def check_request(cfg: StackConfig, window: str | None, municipalities: Iterable[str]) -> None:
    """Refuse (exit 2) a bad window or an unknown municipality, before anything is asked."""
    if window is not None:
        try:
            duration_seconds(window)
        except ValueError as exc:
            raise OperatorError(f"--window: {exc}", exit_code=EXIT_BAD_INPUT) from None
    wanted = list(municipalities)
    known = {m.id for m in cfg.municipalities} | {m.code for m in cfg.municipalities}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        ids = ", ".join(m.id for m in cfg.municipalities)
        raise OperatorError(
            f"unknown municipality {', '.join(unknown)}; stack {cfg.stack} has {ids}", exit_code=EXIT_BAD_INPUT
        )


@dataclass(frozen=True)
class Measurements:
    """What the lab's Prometheus holds over one window, by municipality id (and system)."""

    availability: dict[tuple[str, str], Availability] = field(default_factory=dict)
    latency_p95: dict[tuple[str, str], float] = field(default_factory=dict)
    rpo: dict[str, float] = field(default_factory=dict)
    rto: dict[str, float] = field(default_factory=dict)
    linkage_rto: dict[str, float] = field(default_factory=dict)
    backup_age: dict[str, float] = field(default_factory=dict)
    undeclared: dict[tuple[str, str], float] = field(default_factory=dict)  # probes now, of undeclared ones
    incidents: list[Incident] = field(default_factory=list)


def measure(
    cfg: StackConfig, prometheus: Prometheus, served: Iterable[str], window: str, chosen: list[Municipality], at: float
) -> Measurements:
    """Ask Prometheus everything one window needs (PrometheusUnreachable when it does not answer)."""
    q = queries(window, [m.id for m in chosen])
    start = at - duration_seconds(window)
    windows, since = maintenance_windows(cfg.stack), in_service_since(cfg.stack)
    served = tuple(served)
    ids = {m.id for m in cfg.municipalities}

    def by_municipality(expr: str) -> dict[str, float]:
        return {labels.get("municipality", ""): v for labels, v in prometheus.query(expr, at)}

    def by_system(expr: str) -> dict[tuple[str, str], float]:
        return {
            (labels.get("municipality", ""), labels.get("system", "")): v for labels, v in prometheus.query(expr, at)
        }

    # Prometheus answers queries side by side: the slow ones (a month of each office's minutes)
    # are asked at once rather than one after the other.
    with ThreadPoolExecutor(4) as pool:
        available = pool.submit(measure_availability, cfg, prometheus, served, start, at, windows, since, chosen)
        latency = pool.submit(by_system, q["latency_p95"])
        outages = pool.submit(
            incidents, cfg, prometheus, served, start, at, windows, since, incident_notes(cfg.stack), chosen
        )
        return Measurements(
            availability={(a.municipality, a.system): a for a in available.result()},
            latency_p95=latency.result(),
            rpo=by_municipality(q["rpo"]),
            rto=by_municipality(q["rto"]),
            linkage_rto=by_municipality(q["linkage_rto"]),
            backup_age=by_municipality(q["backup_age"]),
            undeclared={key: v for key, v in by_system(q["probing"]).items() if key[0] not in ids},
            incidents=outages.result(),
        )


def evaluate(
    cfg: StackConfig,
    prometheus: Prometheus,
    served: Iterable[str],
    window: str | None = None,
    municipalities: Iterable[str] = (),
) -> SlaReport:
    """Evaluate the stack's targets for the systems the lab `served`; `window` overrides each
    target's own. Bad input is refused (``check_request``) before Prometheus is asked."""
    wanted = list(municipalities)
    check_request(cfg, window, wanted)
    chosen = [m for m in cfg.municipalities if not wanted or m.id in wanted or m.code in wanted]
    served = tuple(served)
    at = time.time()  # one instant for every query, so the rows agree with each other
    windows = {window or cfg.sla_for(m, system).window for m in chosen for system in m.services}
    try:
        measured: dict[str, Measurements] | str = {w: measure(cfg, prometheus, served, w, chosen, at) for w in windows}
    except PrometheusUnreachable as exc:
        measured = str(exc)
    rows = judge_all(cfg, chosen, served, window, measured, show_undeclared=not wanted)
    found = [] if isinstance(measured, str) else measured[max(windows, key=duration_seconds)].incidents
    orphans = [w for w in maintenance_windows(cfg.stack) if w.orphaned]
    return SlaReport(cfg.stack, prometheus.url, rows, found, orphans)


def spoken(seconds: float) -> str:
    """A duration as an operator says it.

    >>> spoken(42), spoken(270), spoken(3 * 3600), spoken(30 * 86400)
    ('42 s', '4.5 min', '3.0 h', '30.0 d')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size or (unit == "min" and seconds >= 120):
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def judge_availability(a: Availability, minimum: float) -> tuple[str, str]:
    """Contractual availability judged, and why: missed once the downtime is beyond the whole
    window's budget; otherwise met or missed only on `minimum` percent of the window measured."""
    if a.contractual_percent is None:
        if not a.measured_seconds:
            return NO_DATA, "not in service yet (`lgcloud configure` verifies it)"
        if a.coverage_percent < minimum:  # just put into service: its first minute is not recorded yet
            return NOT_ENOUGH, f"in service for {spoken(a.measured_seconds)}, no probe recorded yet"
        return NO_DATA, f"no probes in {spoken(a.measured_seconds)} in service: is the office's prober running?"
    if a.downtime_seconds > a.budget_seconds:
        return MISSED, f"{spoken(a.downtime_seconds)} down, beyond the window's budget of {spoken(a.budget_seconds)}"
    if a.coverage_percent < minimum:
        return NOT_ENOUGH, (
            f"in service for {spoken(a.measured_seconds)} of {spoken(a.service_seconds)} of service hours "
            f"in the window ({a.coverage_percent:.1f} %); judged from {minimum:g} %"
        )
    status, _ = judge("availability", a.target_percent, a.contractual_percent)
    return status, f"{a.probes} probes, {a.coverage_percent:.0f} % of the service hours measured"


def _availability_row(row: functools.partial, a: Availability | None, minimum: float) -> Evaluation:
    if a is None:
        return row(NO_DATA, detail="no probes")
    status, detail = judge_availability(a, minimum)
    if a.contractual_percent is None:
        return row(status, detail=detail)
    _, margin = judge("availability", a.target_percent, a.contractual_percent)
    extra = {
        "raw_percent": a.raw_percent,
        "budget_left_minutes": a.budget_left_seconds / 60,
        "coverage_percent": a.coverage_percent,
    }
    return row(status, a.contractual_percent, margin, detail, **extra)


def judge_all(
    cfg: StackConfig,
    chosen: list[Municipality],
    served: Iterable[str],
    window: str | None,
    measured: dict[str, Measurements] | str,
    show_undeclared: bool = True,
) -> list[Evaluation]:
    """Every target of the chosen municipalities against what was measured (a str: why nothing was)."""
    served = set(served)
    failure = measured if isinstance(measured, str) else ""
    rows: list[Evaluation] = []
    backup_goal = BACKUP_SLACK * duration_seconds(cfg.backup.interval)
    for m in chosen:
        row = functools.partial(
            Evaluation, m.id, m.name, DATABASE, "backup_age", OBJECTIVES["backup_age"][0], "now", backup_goal
        )
        if isinstance(measured, str):
            rows.append(row(UNREACHABLE, detail=failure))
            continue
        age = next(iter(measured.values())).backup_age.get(m.id) if measured else None
        status, margin = judge("backup_age", backup_goal, age)
        rows.append(row(status, age, margin, "newest backup" if age is not None else "no backup metrics yet"))
    for m in chosen:
        for system in m.services:
            target = cfg.sla_for(m, system)
            w = window or target.window
            goals = {
                "availability": target.availability_percent,
                "latency_p95": target.latency_p95_ms,
                "rpo": target.rpo_seconds,
                "rto": target.rto_seconds,
            }
            for objective, goal in goals.items():
                row = functools.partial(Evaluation, m.id, m.name, system, objective, OBJECTIVES[objective][0], w, goal)
                if system not in served:
                    rows.append(row(NOT_SERVED, detail="the lab runs no service for this system; nothing to measure"))
                    continue
                if isinstance(measured, str):
                    rows.append(row(UNREACHABLE, detail=failure))
                    continue
                seen = measured[w]
                if objective == "availability":
                    rows.append(
                        _availability_row(row, seen.availability.get((m.id, system)), cfg.slm.minimum_data_percent)
                    )
                    continue
                if objective == "rto" and system not in (DRILL_SYSTEM, LINKAGE):
                    rows.append(row(NO_DATA, detail=f"the drills measure {DRILL_SYSTEM}'s recovery, not {system}'s"))
                    continue
                value = {
                    "latency_p95": seen.latency_p95.get((m.id, system)),
                    "rpo": seen.rpo.get(m.id),
                    "rto": (seen.linkage_rto if system == LINKAGE else seen.rto).get(m.id),
                }[objective]
                if value is not None and math.isinf(value):  # a drill in which the service never came back
                    rows.append(row(MISSED, detail="did not recover within the last drill"))
                    continue
                status, margin = judge(objective, goal, value)
                detail = ""
                if objective == "rto" and system == LINKAGE:
                    detail = (
                        "last site-loss drill, as 税 saw it" if value is not None else "no site-loss drill asked it yet"
                    )
                elif objective == "rto":
                    detail = "last drills" if value is not None else "no drill result yet (lgcloud drill)"
                elif value is None:
                    detail = f"no samples in the last {w}"
                rows.append(row(status, value, margin, detail))

    if not isinstance(measured, str) and show_undeclared:  # series of municipalities the stack no longer declares
        for w, seen in measured.items():
            for municipality, system in sorted(seen.undeclared):
                detail = f"Prometheus has probes of {municipality!r}, which stack {cfg.stack} does not declare"
                rows.append(Evaluation(municipality, "", system, "availability", "%", w, None, UNKNOWN, detail=detail))
    return rows


@dataclass(frozen=True)
class SlaReport:
    """Every target evaluated, against which Prometheus."""

    stack: str
    prometheus: str
    evaluations: list[Evaluation]
    incidents: list[Incident] = field(default_factory=list)  # in the longest window evaluated
    orphaned_windows: list[MaintenanceWindow] = field(default_factory=list)  # open, their process gone

    @property
    def exit_code(self) -> int:
        """0 when every target evaluated is met; 1 when any is missed; 3 when nothing is missed but
        some target could not be evaluated. Systems the lab does not serve do not count."""
        statuses = {e.status for e in self.evaluations}
        if MISSED in statuses:
            return EXIT_FAILED
        if statuses & {NO_DATA, NOT_ENOUGH, UNREACHABLE, UNKNOWN}:
            return EXIT_NOT_EVALUATED
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "prometheus": self.prometheus,
            "exit_code": self.exit_code,
            "results": [asdict(e) for e in self.evaluations],
            "incidents": [asdict(i) for i in self.incidents],
            "orphaned_windows": [asdict(w) for w in self.orphaned_windows],
        }
