"""``lgcloud sla``: every SLA target of the stack, evaluated with PromQL against the lab's Prometheus.

What is measured, per municipality and business system:

- availability: the share of probes from the municipality's own office terminal, by name through
  LGWAN or IP-VPN, that succeeded over the window (what a clerk sees);
- p95 latency: the 95th percentile of those probes' durations over the window;
- RPO: the worst replication lag over the window (0 while the primary streams synchronously);
- RTO: the recovery time of the municipality in the last drill of each scenario (the worst).

A target that cannot be evaluated (no samples, Prometheus unreachable, a municipality Prometheus
knows but the stack does not) is reported as such, never as met::

    lgcloud sla --stack dev --window 1h
    lgcloud sla --json | jq '.results[] | select(.status != "met")'
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import yaml

from .config import BUSINESS_SYSTEMS, PROJECT_ROOT, StackConfig, duration_seconds
from .topology import plan

__all__ = [
    "EXIT_MISSED",
    "EXIT_NOT_EVALUATED",
    "Evaluation",
    "Prometheus",
    "PrometheusUnreachable",
    "evaluate",
    "exit_code",
    "judge",
    "prometheus_url",
    "queries",
    "served_systems",
]

EXIT_MISSED = 1
EXIT_NOT_EVALUATED = 3  # nothing missed, but some target could not be evaluated

MET, MISSED, NO_DATA, UNREACHABLE, NOT_SERVED, UNKNOWN = (
    "met", "missed", "no data", "Prometheus unreachable", "not served", "unknown municipality")
# Objective -> (unit, True when a higher measurement is better).
OBJECTIVES = {"availability": ("%", True), "latency_p95": ("ms", False), "rpo": ("s", False),
              "rto": ("s", False)}
_MONITOR_DEFAULTS = PROJECT_ROOT / "roles" / "monitor" / "defaults" / "main.yml"


class PrometheusUnreachable(Exception):
    """Prometheus did not answer; nothing can be evaluated."""


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
    measured: float | None
    status: str
    margin: float | None  # headroom in the target's unit; negative when missed
    detail: str = ""


def judge(objective: str, target: float, measured: float | None) -> tuple[str, float | None]:
    """Met or missed, and the margin (how far inside the target; negative outside).

    >>> judge("availability", 99.9, 99.95)
    ('met', 0.05...)
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
        "latency_p95": ("1000 * max by (municipality, system) "
                        f'(quantile_over_time(0.95, probe_duration_seconds{{job="probe"}}[{window}]))'),
        "rpo": f"max by (municipality) (max_over_time(municipality:postgresql_rpo_seconds:max[{window}]))",
        "rto": "max by (municipality) (lgcloud_drill_rto_seconds)",
    }


def served_systems(defaults: Path = _MONITOR_DEFAULTS) -> tuple[str, ...]:
    """Systems the offices probe (the monitor role's `monitor_probe_systems`): the ones the lab serves."""
    values = yaml.safe_load(defaults.read_text(encoding="utf-8")) or {}
    return tuple(s["name"] for s in values.get("monitor_probe_systems") or [])


def prometheus_url(cfg: StackConfig, defaults: Path = _MONITOR_DEFAULTS) -> str:
    """Prometheus of the stack: the monitor's mgmt address, reached from the controller."""
    port = (yaml.safe_load(defaults.read_text(encoding="utf-8")) or {}).get("monitor_prometheus_port", 9090)
    return f"http://{plan(cfg).vm('monitor').addresses['mgmt']}:{port}"


class Prometheus:
    """The HTTP query API: ``Prometheus(url).query(expr)`` -> [(labels, value), …]."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict, float]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # Prometheus answered: the query itself is wrong
            detail = exc.read().decode(errors="replace")[:300]
            raise RuntimeError(f"Prometheus refused {expr!r}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusUnreachable(f"Prometheus at {self.url} does not answer ({reason})") from None
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


def _by(results: list[tuple[dict, float]], *keys: str) -> dict[tuple, float]:
    return {tuple(labels.get(k, "") for k in keys): value for labels, value in results}


def evaluate(cfg: StackConfig, prometheus: Prometheus, window: str | None = None,
             municipalities: Iterable[str] = (), served: Iterable[str] | None = None) -> list[Evaluation]:
    """Evaluate the stack's targets; `window` overrides each target's own. Raises ValueError for
    a bad window or an unknown municipality (bad input: nothing is asked of Prometheus)."""
    if window is not None:
        try:
            duration_seconds(window)
        except ValueError as exc:
            raise ValueError(f"--window: {exc}") from None
    wanted = list(municipalities)
    known = {m.id for m in cfg.municipalities} | {m.code for m in cfg.municipalities}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        ids = ", ".join(m.id for m in cfg.municipalities)
        raise ValueError(f"unknown municipality {', '.join(unknown)}; stack {cfg.stack} has {ids}")
    chosen = [m for m in cfg.municipalities if not wanted or m.id in wanted or m.code in wanted]
    served = set(served_systems() if served is None else served)
    at = time.time()  # one instant for every query, so the rows agree with each other

    targets = [(m, system, cfg.sla_for(m, system)) for m in chosen for system in m.systems]
    windows = {window or t.window for _, _, t in targets}
    measured: dict[str, dict[str, dict[tuple, float]]] = {}
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
            }
    except PrometheusUnreachable as exc:
        failure = str(exc)

    rows: list[Evaluation] = []
    for m, system, target in targets:
        w = window or target.window
        wanted_values = {"availability": target.availability_percent, "latency_p95": target.latency_p95_ms,
                         "rpo": target.rpo_seconds, "rto": target.rto_seconds}
        for objective, goal in wanted_values.items():
            unit = OBJECTIVES[objective][0]
            if system not in served:
                rows.append(Evaluation(m.id, m.name, system, objective, unit, w, goal, None, NOT_SERVED, None,
                                       "the lab runs no service for this system; nothing to measure"))
                continue
            if failure:
                rows.append(Evaluation(m.id, m.name, system, objective, unit, w, goal, None, UNREACHABLE, None,
                                       failure))
                continue
            key = (m.id, system) if objective in ("availability", "latency_p95") else (m.id,)
            value = measured[w][objective].get(key)
            if value is not None and math.isinf(value):  # a drill in which the service never came back
                rows.append(Evaluation(m.id, m.name, system, objective, unit, w, goal, None, MISSED, None,
                                       "did not recover within the last drill"))
                continue
            status, margin = judge(objective, goal, value)
            detail = ""
            if objective == "availability" and value is not None:
                detail = f"{measured[w]['probes'].get(key, 0):.0f} probes"
            elif objective == "rto":
                detail = "last drills" if value is not None else "no drill result yet (lgcloud drill)"
            elif value is None:
                detail = f"no samples in the last {w}"
            rows.append(Evaluation(m.id, m.name, system, objective, unit, w, goal, value, status, margin, detail))

    if not failure and not wanted:  # series of municipalities the stack no longer declares
        ids = {m.id for m in cfg.municipalities}
        for w in windows:
            for municipality, system in sorted(measured[w]["availability"]):
                if municipality not in ids:
                    rows.append(Evaluation(municipality, "", system, "availability", "%", w, None,
                                           measured[w]["availability"][(municipality, system)], UNKNOWN, None,
                                           f"Prometheus has probes of {municipality!r}, which stack "
                                           f"{cfg.stack} does not declare"))
    return rows


def exit_code(rows: list[Evaluation]) -> int:
    """0 when every target evaluated is met; 1 when any is missed; 3 when nothing is missed but
    some target could not be evaluated. Systems the lab does not serve do not count."""
    statuses = {r.status for r in rows}
    if MISSED in statuses:
        return EXIT_MISSED
    if statuses & {NO_DATA, UNREACHABLE, UNKNOWN}:
        return EXIT_NOT_EVALUATED
    return 0


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{value:.3f} %"
    return f"{value:,.0f} {unit}" if abs(value) >= 100 or value == int(value) else f"{value:.2f} {unit}"


def render(rows: list[Evaluation], cfg: StackConfig, url: str, out, err, as_json: bool) -> None:
    """The table an SLM meeting reads (or its JSON), to `out`; notes to `err`."""
    if as_json:
        out.print_json(json.dumps({"stack": cfg.stack, "prometheus": url, "exit_code": exit_code(rows),
                                   "results": [asdict(r) for r in rows]}, ensure_ascii=False))
        return
    from rich.table import Table

    colours = {MET: "green", MISSED: "red", NO_DATA: "yellow", UNREACHABLE: "red", UNKNOWN: "magenta",
               NOT_SERVED: "dim"}
    table = Table(title=f"SLA of stack {cfg.stack} ({url})")
    for column in ("municipality", "system", "objective", "window", "target", "measured", "status", "margin",
                   "note"):
        table.add_column(column, justify="right" if column in ("target", "measured", "margin") else "left")
    for r in rows:
        if r.status == NOT_SERVED:
            continue
        colour = colours[r.status]
        margin = "—" if r.margin is None else ("+" if r.margin >= 0 else "") + _number(r.margin, r.unit)
        table.add_row(f"{r.name} {r.municipality}" if r.name else r.municipality,
                      f"{BUSINESS_SYSTEMS.get(r.system, r.system)} {r.system}", r.objective,
                      r.window if r.objective in ("availability", "latency_p95", "rpo") else "last",
                      _number(r.target, r.unit), _number(r.measured, r.unit), f"[{colour}]{r.status}[/]", margin,
                      "" if r.status == UNREACHABLE else r.detail)
    out.print(table)
    unreachable = next((r.detail for r in rows if r.status == UNREACHABLE), "")
    if unreachable:
        err.print(f"[red]✗[/] {unreachable}: is stack {cfg.stack} up and configured (`make up`)?")
    unserved = sorted({f"{r.municipality}/{r.system}" for r in rows if r.status == NOT_SERVED})
    if unserved:
        err.print(f"not evaluated (the lab runs no service for them): {', '.join(unserved)}")
    code = exit_code(rows)
    counts = {s: sum(r.status == s for r in rows) for s in colours if s != NOT_SERVED}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    err.print(f"{'✓' if code == 0 else '✗'} {summary}")
