"""The agreed service hours as spans of time, and the arithmetic of taking planned work out of them.

A span is ``(start, end)`` in epoch seconds, start included, end excluded. Service hours are held
in Japan's time: an office day is neither a weekend, a 国民の祝日 or 休日, nor 29 December to
3 January (the 行政機関の休日 of 行政機関の休日に関する法律)::

    >>> import datetime as dt
    >>> office_day(dt.date(2026, 11, 3)), office_day(dt.date(2026, 11, 4)), office_day(dt.date(2026, 12, 29))
    (False, True, False)
    >>> hours = ServiceHours(days="office days", start="08:30", end="17:15")
    >>> day = dt.datetime(2026, 11, 4, tzinfo=JST).timestamp()
    >>> [(round((a - day) / 3600, 2), round((b - day) / 3600, 2)) for a, b in service_spans(hours, day, day + 86400)]
    [(8.5, 17.25)]
    >>> subtract([(0, 10)], [(2, 3), (5, 7)])
    [(0, 2), (3, 5), (7, 10)]
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Iterable

import holidays

from .schema import ServiceHours

__all__ = ["JST", "Span", "duration", "intersect", "office_day", "service_spans", "subtract"]

JST = zoneinfo.ZoneInfo("Asia/Tokyo")
Span = tuple[float, float]


@functools.cache
def _holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("JP", years=year)


def office_day(day: dt.date) -> bool:
    """A day the municipal offices are open (開庁日)."""
    new_year = (day.month, day.day) >= (12, 29) or (day.month, day.day) <= (1, 3)
    return day.weekday() < 5 and not new_year and day not in _holidays(day.year)


def _at(day: dt.date, clock: str) -> float:
    hours, minutes = (int(part) for part in clock.split(":"))
    return (dt.datetime.combine(day, dt.time(0), JST) + dt.timedelta(hours=hours, minutes=minutes)).timestamp()


def service_spans(hours: ServiceHours, start: float, end: float) -> list[Span]:
    """The agreed service hours between `start` and `end`, in order."""
    if end <= start:
        return []
    if hours.always:
        return [(start, end)]
    spans = []
    day = dt.datetime.fromtimestamp(start, JST).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(end, JST).date()
    while day <= last:
        if hours.days == "every day" or office_day(day):
            a, b = max(start, _at(day, hours.start)), min(end, _at(day, hours.end))
            if a < b:
                spans.append((a, b))
        day += dt.timedelta(days=1)
    return spans


def subtract(spans: Iterable[Span], removed: Iterable[Span]) -> list[Span]:
    """`spans` without any moment of `removed` (planned work, time before a service began)."""
    result = list(spans)
    for r0, r1 in removed:
        kept = []
        for a, b in result:
            if r1 <= a or b <= r0:
                kept.append((a, b))
                continue
            if a < r0:
                kept.append((a, r0))
            if r1 < b:
                kept.append((r1, b))
        result = kept
    return result


def intersect(spans: Iterable[Span], a: float, b: float) -> list[Span]:
    """The parts of `spans` between `a` and `b`."""
    return [(max(s, a), min(e, b)) for s, e in spans if max(s, a) < min(e, b)]


def duration(spans: Iterable[Span]) -> float:
    return sum(b - a for a, b in spans)
