"""Service levels as an agreement defines them, from the office probes in Prometheus.

Contractual availability (稼働率) is measured over the agreed service hours
(``lgcloud:sla.service_hours``), from when the municipality was put into service, with planned
work taken out: (successful probes) / (probes) in what is left. Raw availability is every probe of
the window. The error budget is what the target allows of the window's service hours, less the
unplanned downtime so far. A target is judged met only on ``lgcloud:slm.minimum_data_percent``
of the window measured; it is missed as soon as the downtime exceeds the whole window's budget.

An incident is a run of failed probes of one municipality's system that is not planned work,
after the municipality was put into service: when it began (first failed probe) and ended (first
probe that succeeded again), and the alerts that fired for it.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from ..model.calendar import JST, Span, duration, intersect, service_spans, subtract
from ..model.schema import Municipality, StackConfig
from ..state.slm import MaintenanceWindow
from .prometheus import Prometheus, Series

__all__ = [
    "Availability",
    "Day",
    "Incident",
    "daily",
    "days_between",
    "eligible_spans",
    "incident_id",
    "incidents",
    "measure_availability",
    "planned_spans",
    "verify_service",
]

PROBES = 'probe_success{job="probe"}'
# Over a window longer than this the minute series the monitor records (monitoring/rules/sla.yml)
# are read instead of every probe: a month of 5 s probes of 30 municipalities is 50 million
# samples, seconds of Prometheus's time for each pass. Spans are then counted in whole minutes.
EVERY_PROBE_UP_TO = 86400.0


@dataclass(frozen=True)
class Probes:
    """How each figure is read from Prometheus over a ``{range}`` such as ``[3600s] @ 1796000000``
    for the offices matching ``{match}``: from every probe, or from the monitor's minute series."""

    good: str
    count: str
    lowest: str
    p95: str
    # A minute's record speaks for the minute before it: within a span only the minutes wholly
    # inside it are read, so that a span never takes the probes of the planned work beside it.
    edge: float = 0.0

    @staticmethod
    def over(seconds: float) -> Probes:
        return MINUTES if seconds > EVERY_PROBE_UP_TO else EVERY_PROBE


_RANGE = '{{job="probe", {match}}}{range}'
EVERY_PROBE = Probes(
    good=f"sum_over_time(probe_success{_RANGE})",
    count=f"count_over_time(probe_success{_RANGE})",
    lowest=f"min_over_time(probe_success{_RANGE})",
    p95=f"quantile_over_time(0.95, probe_duration_seconds{_RANGE})",
)
_MINUTE_RANGE = "{{{match}}}{range}"
MINUTES = Probes(
    good=f"sum_over_time(municipality_system:probe_success:sum1m{_MINUTE_RANGE})",
    count=f"sum_over_time(municipality_system:probe_success:count1m{_MINUTE_RANGE})",
    lowest=f"min_over_time(municipality_system:probe_success:min1m{_MINUTE_RANGE})",
    # The 95th percentile of each minute's: an upper estimate of the window's, never a lower one.
    p95=f"quantile_over_time(0.95, municipality_system:probe_duration_seconds:p95_1m{_MINUTE_RANGE})",
    edge=60.0,
)


def _match(municipalities: Iterable[str]) -> str:
    return f'municipality=~"{"|".join(sorted(set(municipalities)))}"'


def _until(a: float, b: float) -> str:
    """The range from `a` to `b` (whole seconds)."""
    return f"[{int(b - a)}s] @ {int(b)}"


# Failed probes closer than this to each other are one incident (a flapping service).
INCIDENT_GAP = 30.0
# How long after an incident's end an alert may still be the one it fired (alerts wait `for:`).
ALERT_LATENESS = 300.0


@dataclass(frozen=True)
class Availability:
    """One municipality's system over one window."""

    municipality: str
    system: str
    target_percent: float
    start: float
    end: float
    service_seconds: float  # agreed service hours in the window, planned work taken out
    measured_seconds: float  # of which the municipality was in service (what was measured)
    contractual_percent: float | None  # None: no probe in what was measured
    raw_percent: float | None  # every probe in the window
    downtime_seconds: float  # unplanned, within service hours, in service
    probes: int

    @property
    def coverage_percent(self) -> float:
        return 100 * self.measured_seconds / self.service_seconds if self.service_seconds else 0.0

    @property
    def budget_seconds(self) -> float:
        return (1 - self.target_percent / 100) * self.service_seconds

    @property
    def budget_left_seconds(self) -> float:
        return self.budget_seconds - self.downtime_seconds


@dataclass(frozen=True)
class Incident:
    id: str
    municipality: str
    system: str
    start: float
    end: float | None  # None: still failing
    counted_seconds: float  # within service hours and outside planned work: what the budget pays
    alerts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.time()) - self.start


def incident_id(municipality: str, system: str, start: float) -> str:
    """``b-town-jumin-20261202-173015``: readable, and the same however often it is derived."""
    return f"{municipality}-{system}-{dt.datetime.fromtimestamp(start, JST):%Y%m%d-%H%M%S}"


def planned_spans(
    windows: Iterable[MaintenanceWindow], municipality: str, drills_are_planned: bool, now: float
) -> list[Span]:
    """The planned work that covered `municipality` (an open window runs until now)."""
    return [
        (w.start, w.end if w.end is not None else now)
        for w in windows
        if w.covers(municipality) and (drills_are_planned or w.kind != "drill")
    ]


def eligible_spans(
    cfg: StackConfig, m: Municipality, system: str, start: float, end: float, planned: list[Span]
) -> list[Span]:
    hours = cfg.sla_for(m, system).service_hours
    return subtract(service_spans(hours, start, end), planned)


def _sums(
    prometheus: Prometheus, probes: Probes, groups: list[tuple[Iterable[str], list[tuple[str, Span]]]]
) -> list[dict[tuple[str, str, str], tuple[float, float]]]:
    """For each group of municipalities over its labelled spans (a label may name several):
    (municipality, system, label) -> (successful probes, probes). One query per figure for all."""
    terms: list[tuple[int, str, str, int, int]] = []  # group, label, match, start, end
    for group, (members, spans) in enumerate(groups):
        match = _match(members)
        for label, (a, b) in spans:
            if math.floor(b) - math.ceil(a + probes.edge) >= 1:
                terms.append((group, label, match, math.ceil(a + probes.edge), math.floor(b)))
    totals: list[dict[tuple[str, str, str], list[float]]] = [defaultdict(lambda: [0.0, 0.0]) for _ in groups]
    # `or` keeps every term's series apart (a label each); they are added up here.
    term = 'label_replace(sum by (municipality, system) ({}), "span", "{}", "", "")'
    for column, figure in enumerate((probes.good, probes.count)):
        if not terms:
            break
        expr = " or ".join(
            term.format(figure.format(match=match, range=_until(a, b)), i)
            for i, (_, _, match, a, b) in enumerate(terms)
        )
        for labels, value in prometheus.query(expr):
            group, label, *_ = terms[int(labels["span"])]
            totals[group][(labels.get("municipality", ""), labels.get("system", ""), label)][column] += value
    return [{key: (good, count) for key, (good, count) in found.items()} for found in totals]


def _labelled(
    prometheus: Prometheus, probes: Probes, spans: dict[tuple[str, str], list[tuple[str, Span]]]
) -> dict[tuple[str, str, str], tuple[float, float]]:
    """`_sums` for each (municipality, system)'s own labelled spans, grouped by the spans that
    several share (the usual case: the same calendar, no planned work of their own)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for (municipality, _), own in spans.items():
        if municipality not in groups[tuple(own)]:
            groups[tuple(own)].append(municipality)
    found: dict[tuple[str, str, str], tuple[float, float]] = {}
    shared = list(groups.items())
    asked: list[tuple[Iterable[str], list[tuple[str, Span]]]] = [(members, list(key)) for key, members in shared]
    for (key, _), sums in zip(shared, _sums(prometheus, probes, asked)):
        for (m, system, label), value in sums.items():
            if tuple(spans.get((m, system), ())) == key:
                found[(m, system, label)] = value
    return found


def measure_availability(
    cfg: StackConfig,
    prometheus: Prometheus,
    systems: Iterable[str],
    start: float,
    end: float,
    windows: list[MaintenanceWindow],
    in_service: dict[str, float],
    municipalities: Iterable[Municipality] | None = None,
) -> list[Availability]:
    """Contractual and raw availability of each municipality's `systems` between `start` and `end`."""
    chosen = list(cfg.municipalities if municipalities is None else municipalities)
    systems = tuple(systems)
    now = time.time()
    eligible: dict[tuple[str, str], tuple[list[Span], list[Span]]] = {}
    for m in chosen:
        planned = planned_spans(windows, m.id, cfg.slm.drills_are_planned, now)
        since = in_service.get(m.id, math.inf)
        for system in m.services:
            if system in systems:
                window = eligible_spans(cfg, m, system, start, end, planned)
                eligible[(m.id, system)] = (window, intersect(window, since, end))
    probes = Probes.over(end - start)
    contractual = _labelled(
        prometheus, probes, {key: [("", span) for span in measured] for key, (_, measured) in eligible.items()}
    )
    (whole,) = _sums(prometheus, probes, [([m.id for m in chosen], [("", (start, end))])])
    raw = {(m, system): 100 * good / count for (m, system, _), (good, count) in whole.items() if count}
    results = []
    for m in chosen:
        for system in m.services:
            if (m.id, system) not in eligible:
                continue
            window, measured = eligible[(m.id, system)]
            good, count = contractual.get((m.id, system, ""), (0.0, 0.0))

            share = good / count if count else None
            results.append(
                Availability(
                    municipality=m.id,
                    system=system,
                    target_percent=cfg.sla_for(m, system).availability_percent,
                    start=start,
                    end=end,
                    service_seconds=duration(window),
                    measured_seconds=duration(measured),
                    contractual_percent=None if share is None else 100 * share,
                    raw_percent=raw.get((m.id, system)),
                    downtime_seconds=0.0 if share is None else (1 - share) * duration(measured),
                    probes=int(count),
                )
            )
    return results


def _failed_hours(prometheus: Prometheus, start: float, end: float, match: str) -> dict[tuple[str, str], list]:
    """(municipality, system) -> the hours (as spans) in which at least one probe failed: one
    subquery over the window reads each sample once, then only those hours are read sample by sample."""
    step = 3600
    upto = math.ceil(end / step) * step
    lowest = Probes.over(end - start).lowest.format(match=match, range=f"[{step}s]")
    expr = f"{lowest}[{upto - math.floor(start / step) * step}s:{step}s]"
    found: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for labels, values in prometheus.samples(expr, upto):
        key = (labels.get("municipality", ""), labels.get("system", ""))
        found[key].extend((t - step, t) for t, v in values if v == 0)
    return found


def _runs(samples: list[tuple[float, float]], start: float, end: float, ongoing: bool) -> list[tuple]:
    """Runs of failed probes as (first failed, first succeeded again or None while failing)."""
    runs: list[list] = []
    for t, v in sorted(samples):
        if not start <= t < end:
            continue
        failing = bool(runs) and runs[-1][1] is None
        if v == 0 and not failing:
            if runs and t - runs[-1][1] < INCIDENT_GAP:
                runs[-1][1] = None  # flapping: the same incident goes on
            else:
                runs.append([t, None])
        elif v != 0 and failing:
            runs[-1][1] = t
    if runs and runs[-1][1] is None and not ongoing:  # cut by the end of the window
        runs[-1][1] = end
    return [(a, b) for a, b in runs]


def incidents(
    cfg: StackConfig,
    prometheus: Prometheus,
    systems: Iterable[str],
    start: float,
    end: float,
    windows: list[MaintenanceWindow],
    in_service: dict[str, float],
    notes: dict[str, list] | None = None,
    municipalities: Iterable[Municipality] | None = None,
) -> list[Incident]:
    """Every unplanned outage the office probes saw between `start` and `end`, oldest first."""
    chosen = {m.id: m for m in (cfg.municipalities if municipalities is None else municipalities)}
    systems = set(systems)
    now = time.time()
    found = []
    failed = _failed_hours(prometheus, start, end, _match(chosen))
    fired = _fired(prometheus, [m for m, _ in failed], start, end) if failed else []
    for (municipality, system), hours in sorted(failed.items()):
        m = chosen.get(municipality)
        if m is None or system not in systems:
            continue
        planned = planned_spans(windows, municipality, cfg.slm.drills_are_planned, now)
        since = in_service.get(municipality, math.inf)
        one = f'{PROBES[:-1]}, municipality="{municipality}", system="{system}"}}'
        for a, b in _merged(hours):
            upto = min(b + 60, now)
            samples = [
                s for _, values in prometheus.samples(f"{one}[{math.ceil(upto - a) + 60}s]", upto) for s in values
            ]
            for run_start, run_end in _runs(samples, max(start, a - 60), min(end, upto), ongoing=upto >= now - 1):
                stop = run_end if run_end is not None else now
                counted = eligible_spans(cfg, m, system, run_start, stop, planned)
                if run_start < since or (not counted and any(p <= run_start and stop <= q for p, q in planned)):
                    continue  # bring-up, or wholly planned work
                ident = incident_id(municipality, system, run_start)
                found.append(
                    Incident(
                        id=ident,
                        municipality=municipality,
                        system=system,
                        start=run_start,
                        end=run_end,
                        counted_seconds=duration(counted),
                        alerts=_alerts(fired, municipality, system, run_start, stop),
                        notes=tuple(n.text for n in (notes or {}).get(ident, ())),
                    )
                )
    return sorted(found, key=lambda i: (i.start, i.municipality, i.system))


def _merged(spans: list[Span]) -> list[Span]:
    merged: list[list[float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _fired(prometheus: Prometheus, municipalities: Iterable[str], start: float, end: float) -> list[Series]:
    """Every alert that fired for the municipalities between `start` and `end` (and a little after:
    alerts wait their `for:`), with when: one query for every incident of the window."""
    upto = min(end + ALERT_LATENESS, time.time())
    expr = f'ALERTS{{alertstate="firing", {_match(municipalities)}}}[{math.ceil(upto - start) + 1}s]'
    return prometheus.samples(expr, upto)


def _alerts(fired: list[Series], municipality: str, system: str, start: float, end: float) -> tuple[str, ...]:
    """The alerts that fired for the municipality (and this system, where they name one) during it."""
    names = {
        labels["alertname"]
        for labels, values in fired
        if labels.get("municipality") == municipality
        and labels.get("system", system) == system
        and any(start <= t <= end + ALERT_LATENESS for t, _ in values)
    }
    return tuple(sorted(names))


def verify_service(
    cfg: StackConfig, prometheus: Prometheus, systems: Iterable[str], municipalities: Iterable[str], timeout: float = 90
) -> tuple[list[str], list[str]]:
    """Wait until every system each municipality runs has answered its office's probe since now.
    Returns the municipalities verified, and for the others what still failed."""
    started = time.time()
    wanted = {m: {s for s in cfg.municipality(m).services if s in set(systems)} for m in municipalities}
    while True:
        fresh = {
            (labels.get("municipality", ""), labels.get("system", ""))
            for labels, at in prometheus.query(f"timestamp({PROBES} == 1)")
            if at >= started
        }
        missing = {m: sorted(s for s in need if (m, s) not in fresh) for m, need in wanted.items()}
        if not any(missing.values()) or time.time() - started > timeout:
            break
        time.sleep(2)
    verified = [m for m, left in missing.items() if not left]
    failing = [f"{m} ({', '.join(left)})" for m, left in missing.items() if left]
    return verified, failing


@dataclass(frozen=True)
class Day:
    """One day (JST) of one municipality's system, as the monthly report draws it."""

    day: dt.date
    contractual_percent: float | None
    raw_percent: float | None
    downtime_seconds: float  # unplanned, in service hours
    p95_ms: float | None  # of every probe of the day


def days_between(start: float, end: float) -> list[tuple[dt.date, float, float]]:
    """The JST days between `start` and `end`, each with its own start and end."""
    found: list[tuple[dt.date, float, float]] = []
    day = dt.datetime.fromtimestamp(start, JST).date()
    while True:
        a = max(start, dt.datetime.combine(day, dt.time(0), JST).timestamp())
        b = min(end, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), JST).timestamp())
        if a >= end:
            return found
        found.append((day, a, b))
        day += dt.timedelta(days=1)


def daily(
    cfg: StackConfig,
    prometheus: Prometheus,
    systems: Iterable[str],
    start: float,
    end: float,
    windows: list[MaintenanceWindow],
    in_service: dict[str, float],
    municipalities: Iterable[Municipality],
) -> dict[tuple[str, str], list[Day]]:
    """Each day's contractual and raw availability, downtime and p95 latency, asked of Prometheus
    a handful of queries at a time whatever the number of days and municipalities."""
    chosen, systems, now = list(municipalities), tuple(systems), time.time()
    days = days_between(start, end)
    measured: dict[tuple[str, str], list[tuple[str, Span]]] = {}
    for m in chosen:
        planned = planned_spans(windows, m.id, cfg.slm.drills_are_planned, now)
        since = in_service.get(m.id, math.inf)
        for system in m.services:
            if system in systems:
                eligible = intersect(eligible_spans(cfg, m, system, start, end, planned), since, end)
                measured[(m.id, system)] = [(str(d), span) for d, a, b in days for span in intersect(eligible, a, b)]
    probes = Probes.over(end - start)
    contractual = _labelled(prometheus, probes, measured)
    ids = [m.id for m in chosen]
    (raw,) = _sums(prometheus, probes, [(ids, [(str(d), (a, b)) for d, a, b in days])])
    term = 'label_replace(1000 * max by (municipality, system) ({}), "span", "{}", "", "")'
    whole = [(str(d), math.ceil(a), math.floor(b)) for d, a, b in days if math.floor(b) - math.ceil(a) >= 1]
    p95: dict[tuple[str, str, str], float] = {}
    if whole:
        match = _match(ids)
        expr = " or ".join(
            term.format(probes.p95.format(match=match, range=_until(a, b)), i) for i, (_, a, b) in enumerate(whole)
        )
        for labels, value in prometheus.query(expr):
            p95[(labels.get("municipality", ""), labels.get("system", ""), whole[int(labels["span"])][0])] = value
    found: dict[tuple[str, str], list[Day]] = {}
    for (m_id, system), labelled in measured.items():
        rows = []
        for d, _, _ in days:
            label = str(d)
            good, count = contractual.get((m_id, system, label), (0.0, 0.0))
            raw_good, raw_count = raw.get((m_id, system, label), (0.0, 0.0))
            seconds = duration(span for lab, span in labelled if lab == label)
            share = good / count if count else None
            rows.append(
                Day(
                    day=d,
                    contractual_percent=None if share is None else 100 * share,
                    raw_percent=100 * raw_good / raw_count if raw_count else None,
                    downtime_seconds=0.0 if share is None else (1 - share) * seconds,
                    p95_ms=p95.get((m_id, system, label)),
                )
            )
        found[(m_id, system)] = rows
    return found
