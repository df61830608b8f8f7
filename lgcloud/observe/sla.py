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
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_EVALUATED, OperatorError
from ..model.naming import DRILL_SYSTEM
from ..model.schema import LINKAGE, StackConfig, duration_seconds
from .prometheus import Prometheus, PrometheusUnreachable, Sample

__all__ = [
    "DATABASE",
    "MET",
    "MISSED",
    "NOT_SERVED",
    "NO_DATA",
    "UNKNOWN",
    "UNREACHABLE",
    "Evaluation",
    "SlaReport",
    "check_request",
    "evaluate",
    "judge",
    "probed_systems",
    "queries",
]

MET, MISSED, NO_DATA, UNREACHABLE, NOT_SERVED, UNKNOWN = (
    "met",
    "missed",
    "no data",
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


def queries(window: str) -> dict[str, str]:
    """The PromQL of each measurement over `window`, one series per municipality (and system)."""
    probes = f'probe_success{{job="probe"}}[{window}]'
    return {
        "availability": f"100 * avg by (municipality, system) (avg_over_time({probes}))",
        "probes": f"sum by (municipality, system) (count_over_time({probes}))",
        "latency_p95": (
            "1000 * max by (municipality, system) "
            f'(quantile_over_time(0.95, probe_duration_seconds{{job="probe"}}[{window}]))'
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
                for labels, _ in prometheus.query('count by (system) (probe_success{job="probe"})')
            }
            - {""}
        )
    )


def _by(results: list[Sample], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(labels.get(k, "") for k in keys): value for labels, value in results}


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
    served = set(served)
    at = time.time()  # one instant for every query, so the rows agree with each other

    targets = [(m, system, cfg.sla_for(m, system)) for m in chosen for system in m.services]
    windows = {window or t.window for _, _, t in targets}
    measured: dict[str, dict[str, dict[tuple[str, ...], float]]] = {}
    failure = ""
    try:
        for w in windows:
            q = queries(w)
            measured[w] = {
                "availability": _by(prometheus.query(q["availability"], at), "municipality", "system"),
                "probes": _by(prometheus.query(q["probes"], at), "municipality", "system"),
                "latency_p95": _by(prometheus.query(q["latency_p95"], at), "municipality", "system"),
                "rpo": _by(prometheus.query(q["rpo"], at), "municipality"),
                "rto": _by(prometheus.query(q["rto"], at), "municipality"),
                "linkage_rto": _by(prometheus.query(q["linkage_rto"], at), "municipality"),
                "backup_age": _by(prometheus.query(q["backup_age"], at), "municipality"),
            }
    except PrometheusUnreachable as exc:
        failure = str(exc)

    rows: list[Evaluation] = []
    backup_goal = BACKUP_SLACK * duration_seconds(cfg.backup.interval)
    for m in chosen:
        row = functools.partial(
            Evaluation, m.id, m.name, DATABASE, "backup_age", OBJECTIVES["backup_age"][0], "now", backup_goal
        )
        if failure:
            rows.append(row(UNREACHABLE, detail=failure))
            continue
        age = next(iter(measured.values()))["backup_age"].get((m.id,)) if measured else None
        status, margin = judge("backup_age", backup_goal, age)
        rows.append(row(status, age, margin, "newest backup" if age is not None else "no backup metrics yet"))
    for m, system, target in targets:
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
            if failure:
                rows.append(row(UNREACHABLE, detail=failure))
                continue
            if objective == "rto" and system not in (DRILL_SYSTEM, LINKAGE):
                rows.append(row(NO_DATA, detail=f"the drills measure {DRILL_SYSTEM}'s recovery, not {system}'s"))
                continue
            key = (m.id, system) if objective in ("availability", "latency_p95") else (m.id,)
            measure = "linkage_rto" if (objective, system) == ("rto", LINKAGE) else objective
            value = measured[w][measure].get(key)
            if value is not None and math.isinf(value):  # a drill in which the service never came back
                rows.append(row(MISSED, detail="did not recover within the last drill"))
                continue
            status, margin = judge(objective, goal, value)
            detail = ""
            if objective == "availability" and value is not None:
                detail = f"{measured[w]['probes'].get(key, 0):.0f} probes"
            elif objective == "rto" and system == LINKAGE:
                detail = (
                    "last site-loss drill, as 税 saw it" if value is not None else "no site-loss drill asked it yet"
                )
            elif objective == "rto":
                detail = "last drills" if value is not None else "no drill result yet (lgcloud drill)"
            elif value is None:
                detail = f"no samples in the last {w}"
            rows.append(row(status, value, margin, detail))

    if not failure and not wanted:  # series of municipalities the stack no longer declares
        ids = {m.id for m in cfg.municipalities}
        for w in windows:
            for municipality, system in sorted(measured[w]["availability"]):
                if municipality not in ids:
                    seen = measured[w]["availability"][(municipality, system)]
                    detail = f"Prometheus has probes of {municipality!r}, which stack {cfg.stack} does not declare"
                    rows.append(
                        Evaluation(municipality, "", system, "availability", "%", w, None, UNKNOWN, seen, detail=detail)
                    )
    return SlaReport(cfg.stack, prometheus.url, rows)


@dataclass(frozen=True)
class SlaReport:
    """Every target evaluated, against which Prometheus."""

    stack: str
    prometheus: str
    evaluations: list[Evaluation]

    @property
    def exit_code(self) -> int:
        """0 when every target evaluated is met; 1 when any is missed; 3 when nothing is missed but
        some target could not be evaluated. Systems the lab does not serve do not count."""
        statuses = {e.status for e in self.evaluations}
        if MISSED in statuses:
            return EXIT_FAILED
        if statuses & {NO_DATA, UNREACHABLE, UNKNOWN}:
            return EXIT_NOT_EVALUATED
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "prometheus": self.prometheus,
            "exit_code": self.exit_code,
            "results": [asdict(e) for e in self.evaluations],
        }
