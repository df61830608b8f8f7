"""The site-level runbook: the center lost is one event, recovered as one.

One watch over the site; one fence of its primaries and its gateway, read from the hypervisor's
kernel rather than asked of an engine busy tearing the site down; then, at once, the backup
replicas promoted in parallel on a bounded pool and the service addresses moved by one command per
gateway (one burst of gratuitous ARP); the offices verified in parallel; the fenced VMs sealed
behind. Each municipality's steps are tried again, with backoff, until its RTO target has passed
since the loss was noticed; one that still fails is named with the step and the reason, and stays
recorded as failed over, so that `lgcloud drill failback` completes its failover before it
switches back (`runbook.complete_failover`).

The per-municipality runbook (`runbook.failover`) stays for the loss of one database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import docker

from ...model.naming import DRILL_SYSTEM
from ...state.failover import Failover, record_site_failover
from ..lab import Lab, LabError, Pair
from .runbook import Timeline, promote, release_at_center, seal, take_at_backup, verify

__all__ = ["POOL", "SITE", "SiteFailover", "center_vms", "detect_site", "site_failover"]

SITE = "center"  # the timeline's name for the steps taken for the whole site
# Steps at once for as many municipalities: each is a command on a VM of its own, but they all go
# through this controller and the hypervisor, whose cores the clerks and the backup site share.
POOL = 8
# The site-level runbook's promotions and verifications at once: a promotion mostly waits (for
# the VM's share of a core, for PostgreSQL to end recovery), so more run at once than POOL.
RUNBOOK_POOL = 16

T = TypeVar("T")
# What a step that may work when tried again raises: the VM or the engine did not answer in time.
_TRANSIENT = (LabError, OSError, docker.errors.APIError)


@dataclass
class SiteFailover:
    """What the site-level runbook achieved: who is served from the backup, who is not and why."""

    served: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # municipality -> "step: reason"
    unsealed: dict[str, str] = field(default_factory=dict)  # fenced, served, its primary's seal not made
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, municipality: str, step: str, reason: object) -> None:
        with self._lock:
            self.failed[municipality] = f"{step}: {reason}"


def center_vms(lab: Lab) -> list[str]:
    return [vm.name for vm in lab.topology.vms if vm.site == "center"]


def detect_site(
    lab: Lab, vms: list[str], stop: threading.Event, misses: int = 2, interval: float = 0.2
) -> float | None:
    """Watch the heartbeats of `vms` together until every one of them has missed `misses` in a
    row: the time of the first round they all missed, or None if stopped first. Some VMs lost is
    not a site lost: each of those has a runbook of its own."""
    missed, first = 0, None
    with ThreadPoolExecutor(min(32, len(vms))) as probes:
        while not stop.is_set():
            began = time.time()
            if any(probes.map(lambda vm: lab.alive(vm, timeout=0.3), vms)):
                missed, first = 0, None
            else:
                missed, first = missed + 1, first or began
                if missed >= misses:
                    return first
            stop.wait(max(0.0, interval - (time.time() - began)))
    return None


def _until(deadline: float, action: Callable[[], T]) -> T:
    """`action`, tried again after a growing pause while it fails and `deadline` has not passed."""
    pause = 0.2
    while True:
        try:
            return action()
        except _TRANSIENT:
            if time.time() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 2.0)


def site_failover(lab: Lab, pairs: list[Pair], timeline: Timeline, scenario: str, noticed: float) -> SiteFailover:
    """Fail every municipality in `pairs` over to the backup site, the center being lost."""
    # Recorded first, all at once: whatever happens next, failback knows every municipality to repair.
    record_site_failover(lab.stack, {p.id: Failover(time.time(), scenario, fenced=(p.db,)) for p in pairs})
    result = SiteFailover()
    deadline = {p.id: noticed + lab.cfg.sla_for(lab.cfg.municipality(p.id), DRILL_SYSTEM).rto_seconds for p in pairs}

    def each(step: str, todo: list[Pair], action: Callable[[Pair], str | None], logged: bool = True) -> list[Pair]:
        """`action` for every pair in parallel; the pairs it succeeded for, the others named."""

        def one(p: Pair) -> Pair | None:
            def attempt() -> None:
                if not logged:
                    action(p)
                    return
                with timeline.step(p.id, step) as note:
                    note(action(p) or "")

            try:
                _until(deadline[p.id], attempt)
                return p
            except Exception as exc:  # anything: the others go on, this one is named
                result.fail(p.id, step, exc)
                return None

        return [p for p in pool.map(one, todo) if p is not None]

    with ThreadPoolExecutor(RUNBOOK_POOL) as pool, ThreadPoolExecutor(3) as behind:
        with timeline.step(SITE, "fence the center") as note:
            fenced, gateway_off, found_on = _fence(lab, pairs, result, pool)
            note(
                f"{len(fenced)} of {len(pairs)} primaries and {'the' if gateway_off else 'not the'} gateway "
                f"off ({found_on} found still running, powered off now); the site's other VMs next"
            )
        # With every old primary off, the offices may be sent to the backup site at once: a write
        # there is refused (read-only) until its replica is promoted, which runs beside the move.
        moving = behind.submit(_move_addresses, lab, fenced, gateway_off, timeline, result, deadline, behind)
        promoted = each("promote the backup replica", fenced, lambda p: promote(lab, p))
        moved, striking = moving.result()
        served = each(
            "verify from the office",
            [p for p in promoted if p in moved],
            lambda p: _verify(lab, p, timeline, deadline[p.id]),
            logged=False,
        )
        # The seals matter once a fenced primary is powered on again, which nothing does before
        # failback (`up` keeps fenced VMs off): they are made once the offices are served, so that
        # their calls to the hypervisor do not take its cores from the recovery.
        sealing = behind.submit(_seal_all, lab, fenced, result)
        for name, work in (
            ("seal the fenced primaries", sealing),
            ("strike the addresses from the lost gateway", striking),
        ):
            if work is not None:
                started = time.time()
                timeline.log(SITE, name, work.result(), started)
    result.served = [p.id for p in served]
    return result


def _fence(lab: Lab, pairs: list[Pair], result: SiteFailover, pool: ThreadPoolExecutor) -> tuple[list[Pair], bool, int]:
    """STONITH for the whole site: every primary not yet off, and the gateway that holds the
    service addresses, powered off, and then found off; the primaries fenced, whether the
    gateway is, and how many of them still ran."""
    targets = ["gateway", *(p.db for p in pairs)]
    on = [vm for vm, off in zip(targets, pool.map(lab.powered_off, targets)) if not off]
    list(pool.map(lambda vm: _stopped(lab, vm, lambda one: lab.power_cut([one])), on))
    still = {vm for vm, off in zip(on, list(pool.map(lab.wait_off, on))) if not off}
    for p in pairs:
        if p.db in still:
            result.fail(p.id, "fence the center primary", f"{p.db} still runs after it was powered off")
    fenced = [p for p in pairs if p.id not in result.failed]
    return fenced, "gateway" not in still, len(on)


def _seal_all(lab: Lab, fenced: list[Pair], result: SiteFailover) -> str:
    """Power off the site's other VMs, and seal each fenced primary (`runbook.seal`)."""
    stragglers = sorted(lab.running_vms(SITE) - {"gateway", *(p.db for p in fenced)})
    off = sum(lab.powered_off(vm) or _stopped(lab, vm, lab.kill) for vm in stragglers)
    sealed = 0
    for p in fenced:
        try:
            seal(lab, p)
            sealed += 1
        except _TRANSIENT as exc:  # failback seals it again before anything starts it
            result.unsealed[p.id] = str(exc)
    return (
        f"{off} of {len(stragglers)} other VMs powered off; {sealed} of {len(fenced)} primaries sealed: "
        "standby.signal on their disks, ports on their closed segments and interconnect cut"
    )


def _stopped(lab: Lab, vm: str, power_off: Callable[[str], object]) -> bool:
    """Power off a VM of the lost site; whether that was done (one that cannot be is left to the note)."""
    try:
        power_off(vm)
        return True
    except _TRANSIENT:
        return False


def _move_addresses(
    lab: Lab,
    pairs: list[Pair],
    gateway_off: bool,
    timeline: Timeline,
    result: SiteFailover,
    deadline: dict[str, float],
    behind: ThreadPoolExecutor,
) -> tuple[list[Pair], Future[str] | None]:
    """The service addresses of `pairs` taken at the backup, one command per gateway; the pairs
    whose address moved, and the striking of the addresses from the lost gateway's record. A
    gateway fenced holds nothing until it boots, so its record (what it takes back at boot) is
    rewritten beside the verification; one not fenced releases them first, by command."""
    if not pairs:
        return [], None
    addresses = [p.service_address for p in pairs]
    until = max(deadline[p.id] for p in pairs)
    try:
        if not gateway_off:
            with timeline.step(SITE, "release the service addresses at the center") as note:
                note(_until(until, lambda: release_at_center(lab, addresses)))
        with timeline.step(SITE, "take the service addresses at the backup") as note:
            note(_until(until, lambda: take_at_backup(lab, addresses)))
    except Exception as exc:
        for p in pairs:
            result.fail(p.id, "move the service address", exc)
        return [], None
    if not gateway_off:
        return pairs, None
    return pairs, behind.submit(_strike, lab, addresses)


def _strike(lab: Lab, addresses: list[str]) -> str:
    try:  # failback finds an address still recorded and completes that failover first
        return release_at_center(lab, addresses)
    except _TRANSIENT as exc:
        return f"not struck ({exc}); failback strikes them before the center gateway boots"


def _verify(lab: Lab, pair: Pair, timeline: Timeline, deadline: float) -> None:
    verify(lab, pair, timeline, "primary", timeout=max(5.0, deadline - time.time()))
