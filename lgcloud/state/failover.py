"""Which municipalities a failover left served from the backup site (``failover.json``).

The unit of failover is a municipality: its primary database, its app and its service address
move together. `lgcloud configure` refuses to run while any municipality is served from the
backup site, so a configuration run can never demote the database that holds the newest data.
Municipalities fail over in parallel, and an operator may run another verb meanwhile: every
change is made under a lock and written whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import Records

__all__ = [
    "Failover",
    "fenced_vms",
    "forget_failovers",
    "record_failback",
    "record_failover",
    "record_site_failover",
    "served_from_backup",
]


@dataclass(frozen=True)
class Failover:
    """One municipality served from the backup site: since when, and after which drill."""

    since: float  # epoch seconds
    scenario: str
    site: str = "backup"
    fenced: tuple[str, ...] = ()  # the VMs the failover fenced: kept off until failback


def _failover(since: float, scenario: str, site: str = "backup", fenced: list[str] | tuple[str, ...] = ()) -> Failover:
    return Failover(since, scenario, site, tuple(fenced))  # JSON has lists


_FAILOVERS: Records[Failover] = Records("failover.json", _failover)


def served_from_backup(stack: str) -> dict[str, Failover]:
    """Municipality id -> its failover, for every municipality served from the backup site."""
    return _FAILOVERS.all(stack)


def fenced_vms(stack: str) -> set[str]:
    """Every VM a failover fenced and a failback has not yet brought back."""
    return {vm for failover in served_from_backup(stack).values() for vm in failover.fenced}


def record_failover(stack: str, municipality: str, failover: Failover) -> None:
    _FAILOVERS.put(stack, municipality, failover)


def record_site_failover(stack: str, failovers: dict[str, Failover]) -> None:
    """Many municipalities failed over as one event (a site lost): recorded in one write."""
    _FAILOVERS.put_all(stack, dict(failovers))


def record_failback(stack: str, municipality: str) -> None:
    _FAILOVERS.put(stack, municipality, None)


def forget_failovers(stack: str) -> None:
    """The stack is gone: nothing is served from anywhere any more."""
    _FAILOVERS.clear(stack)
