"""The drills' scenarios, each an object of the same shape: which municipalities it affects, what
runbook watches, the injection, what restores the lab, and any figure of its own.

    >>> sorted(SCENARIOS)
    ['app-loss', 'data-corruption', 'db-loss', 'failback', 'link-partition', 'site-loss']
"""

from __future__ import annotations

import datetime
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

from ...errors import EXIT_BAD_INPUT, OperatorError
from ...state.failover import served_from_backup
from ..backup import RestoreTarget, backups, restore_point
from ..lab import Lab, LabError, Pair
from .measure import caught_up
from .report import MunicipalityResult
from .runbook import (
    Timeline,
    Unreplicated,
    center_gateway_record,
    center_returns,
    complete_failover,
    detect,
    failback,
    failover,
    restart_app,
    restore_before,
    sealed,
)
from .site import POOL, SITE, center_vms, detect_site, site_failover

__all__ = ["PARTITION_SECONDS", "SCENARIOS", "DrillInvalid", "Exercise", "Scenario"]

PARTITION_SECONDS = 10.0


class DrillInvalid(OperatorError):
    """The drill cannot start from here (bad argument or lab state); nothing was changed."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message, "nothing was changed")


@dataclass
class Exercise:
    """One drill under way: the lab, the municipalities it affects, and the runbook's tasks."""

    lab: Lab
    pairs: list[Pair]
    timeline: Timeline
    pool: ThreadPoolExecutor
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    tasks: list[Future[None]] = field(default_factory=list)

    def run(self, task: Callable[[], None]) -> None:
        """Run a runbook task beside the drill; a failure fails the drill, reported."""

        def guarded() -> None:
            try:
                task()
            except Exception as exc:
                self.errors.append(f"{exc.__class__.__name__}: {exc}")

        self.tasks.append(self.pool.submit(guarded))

    def watch(self, pair: Pair, vm: str, recover: Callable[[Lab, Pair, Timeline], None]) -> None:
        """The runbook watches `vm`'s heartbeat and recovers `pair` once it is missed."""

        def task() -> None:
            noticed = detect(self.lab, vm, self.stop)
            if noticed is None:
                return
            self.timeline.log(pair.id, "detected", f"{vm} missed its heartbeats", noticed)
            recover(self.lab, pair, self.timeline)

        self.run(task)


class Scenario:
    """A disaster and its recovery. Subclasses say what is injected and how the lab comes back."""

    name: ClassVar[str]
    description: ClassVar[str]
    every_municipality: ClassVar[bool] = False  # the whole center or link: no --municipality
    from_backup: ClassVar[bool] = False  # starts where municipalities are served from the backup site
    waits_for_offices: ClassVar[bool] = True  # the runbook's own steps end with the office served
    # The recovery rolls the data back to before the injection: writes acknowledged after it are
    # expected to be gone (listed for re-entry), and service counts as back once writes stop
    # being rolled back (lgcloud.ops.drill.measure.judge).
    rolls_back: ClassVar[bool] = False
    # A 税 clerk asks another municipality through 番号連携 every second (lgcloud.ops.drill.linkage).
    watches_linkage: ClassVar[bool] = False

    def affected(self, lab: Lab, municipality: str | None) -> list[Pair]:
        """The municipalities the drill acts on; DrillInvalid when it cannot start from here."""
        served = served_from_backup(lab.stack)
        chosen = []
        if municipality:
            try:
                chosen = [lab.pair(municipality)]
            except LabError as exc:
                raise DrillInvalid(str(exc)) from None
        if self.from_backup:
            if not served:
                raise DrillInvalid("every municipality is served from the center already: nothing to fail back")
            pairs = chosen or [lab.pairs[m] for m in served if m in lab.pairs]
            for p in pairs:
                if p.id not in served:
                    raise DrillInvalid(f"{p.id} is served from the center already; failed over: {', '.join(served)}")
            return pairs
        if served:
            raise DrillInvalid(
                f"served from the backup site since an earlier drill: {', '.join(served)}; "
                f"run `lgcloud drill failback --stack {lab.stack}` first"
            )
        if self.every_municipality:
            if municipality:
                raise DrillInvalid(f"{self.name} affects every municipality; drop --municipality")
            return list(lab.pairs.values())
        pairs = list(lab.pairs.values())
        return chosen or [next((p for p in pairs if p.replication == "sync"), pairs[0])]

    def needed(self, lab: Lab) -> set[str]:
        """VMs that must run before the drill starts."""
        return {vm.name for vm in lab.topology.vms}

    def prepare(self, lab: Lab, pairs: list[Pair], timeline: Timeline) -> None:
        """Bring the lab to the state the scenario starts from, before any checksum or clerk."""

    def watch(self, exercise: Exercise) -> None:
        """Start the runbook's watchers, before the injection (they are not told when it comes)."""

    def inject(self, exercise: Exercise) -> float:
        """Cause the disaster; return when it happened (epoch seconds)."""
        raise NotImplementedError

    def restore(self, exercise: Exercise) -> None:
        """What brings the lab back once the disaster is injected, beyond the watchers' recovery."""

    def judge(self, result: MunicipalityResult) -> None:
        """A verdict of the scenario's own, added to the municipality's."""


class SiteLoss(Scenario):
    name = "site-loss"
    description = "the whole center is lost while the offices write; every municipality fails over"
    every_municipality = True
    watches_linkage = True

    def watch(self, exercise: Exercise) -> None:
        """One watch over the site: its gateway and every primary; one site-level runbook."""
        lab, pairs, timeline = exercise.lab, exercise.pairs, exercise.timeline

        def task() -> None:
            watched = ["gateway", *(p.db for p in pairs)]
            lab.locate(watched)  # the fencing devices, known before they are needed
            noticed = detect_site(lab, watched, exercise.stop)
            if noticed is None:
                return
            timeline.log(SITE, "detected: center lost", f"{len(watched)} VMs missed their heartbeats", noticed)
            outcome = site_failover(lab, pairs, timeline, self.name, noticed)
            for municipality, why in sorted(outcome.failed.items()):
                exercise.errors.append(
                    f"{municipality} is not served from the backup site ({why}); it stays recorded as failed "
                    f"over: `lgcloud drill failback --stack {lab.stack}` completes its failover, then switches back"
                )
            for municipality, why in sorted(outcome.unsealed.items()):
                exercise.errors.append(
                    f"{municipality}'s fenced primary is stopped but not sealed ({why}); `lgcloud up` keeps it "
                    f"off, and `lgcloud drill failback --stack {lab.stack}` seals it before the center starts"
                )

        exercise.run(task)

    def inject(self, exercise: Exercise) -> float:
        lab = exercise.lab
        center = center_vms(lab)
        injection = lab.power_cut(center)  # the whole site at one instant, not one VM after another
        exercise.timeline.log("lab", "injected: center lost", f"{len(center)} VMs powered off", injection)
        return injection


class VmLoss(Scenario):
    """One VM of one municipality dies (powered off); the runbook notices and recovers."""

    lost: ClassVar[str]  # which of the municipality's VMs: an attribute of Pair ("db", "app")

    def recover(self, lab: Lab, pair: Pair, timeline: Timeline) -> None:
        raise NotImplementedError

    def watch(self, exercise: Exercise) -> None:
        p = exercise.pairs[0]
        exercise.watch(p, getattr(p, self.lost), self.recover)

    def inject(self, exercise: Exercise) -> float:
        p = exercise.pairs[0]
        vm = getattr(p, self.lost)
        injection = time.time()
        exercise.lab.kill(vm)
        exercise.timeline.log(p.id, f"injected: {vm} lost", "powered off", injection)
        return injection


class DbLoss(VmLoss):
    name = "db-loss"
    description = "one municipality's primary database VM dies; that municipality fails over"
    lost = "db"

    def recover(self, lab: Lab, pair: Pair, timeline: Timeline) -> None:
        failover(lab, pair, timeline, self.name)


class AppLoss(VmLoss):
    name = "app-loss"
    description = "one municipality's app VM dies; its hypervisor starts it again"
    lost = "app"

    def recover(self, lab: Lab, pair: Pair, timeline: Timeline) -> None:
        restart_app(lab, pair, timeline)


class LinkPartition(Scenario):
    name = "link-partition"
    description = (
        "interconnect is cut between the sites for 10 s, then restored; nobody fails over: "
        "synchronous municipalities' writes stall (never acknowledged, so never lost) until the "
        "link returns, asynchronous ones go on"
    )
    every_municipality = True

    def __init__(self) -> None:
        self.primaries: dict[str, list[int]] = {}  # per municipality: primaries counted at each sample
        self.injection = 0.0

    def watch(self, exercise: Exercise) -> None:
        # The runbook keeps watching the primaries: a cut link must not make it fail over.
        for p in exercise.pairs:
            exercise.watch(p, p.db, lambda lab, pair, timeline: failover(lab, pair, timeline, self.name))

    def inject(self, exercise: Exercise) -> float:
        """Cut the backup site's replicas from interconnect, and sample who is primary meanwhile."""
        lab, pairs = exercise.lab, exercise.pairs
        injection = time.time()
        for p in pairs:
            lab.cut(p.replica, "interconnect")
        exercise.timeline.log("lab", "injected: interconnect cut", f"{len(pairs)} replica port(s) down", injection)
        self.primaries = {p.id: [] for p in pairs}
        deadline = time.time() + PARTITION_SECONDS
        while time.time() < deadline:
            for p in pairs:
                primaries = sum(lab.sql(vm, "SELECT NOT pg_is_in_recovery()") == "t" for vm in (p.db, p.replica))
                self.primaries[p.id].append(primaries)
            time.sleep(0.5)
        self.injection = injection
        return injection

    def restore(self, exercise: Exercise) -> None:
        lab, timeline = exercise.lab, exercise.timeline
        restored = time.time()
        for p in exercise.pairs:
            lab.plug(p.replica, "interconnect")
        timeline.log("lab", "interconnect restored", f"after {restored - self.injection:.1f} s", restored)
        for p in exercise.pairs:
            with timeline.step(p.id, "replica catches up") as note:
                target = caught_up(lab, p.db, p.replica, 60)
                if target is None:
                    raise LabError(f"{p.replica} did not catch up within 60 s of the link's return")
                note(f"{p.replica} replayed up to {target}")

    def judge(self, result: MunicipalityResult) -> None:
        samples = self.primaries.get(result.id, [])
        if any(s != 1 for s in samples):
            result.fail("more or fewer than one primary was seen during the partition")
        result.primaries_seen = sorted(set(samples))


class DataCorruption(Scenario):
    name = "data-corruption"
    description = (
        "an operator's DELETE without its WHERE empties one municipality's residents and replicates at "
        "once; the runbook restores the database in place from the backups, to the transaction before it"
    )
    waits_for_offices = False  # writes go on, acknowledged, on the damaged data: the runbook verifies
    rolls_back = True

    def inject(self, exercise: Exercise) -> float:
        lab, p, timeline = exercise.lab, exercise.pairs[0], exercise.timeline
        [stanza] = backups(lab, p.id)
        if stanza.latest is None:
            raise DrillInvalid(f"{p.id} has no backup to restore from; run `lgcloud backup run --municipality {p.id}`")
        try:  # the archive must work before anything is damaged: the restore depends on it
            lab.run(p.db, f"runuser -u postgres -- pgbackrest --stanza={p.id} check", timeout=120)
        except LabError as exc:
            raise DrillInvalid(
                f"{p.id}'s WAL archive does not work ({exc}); see WalArchiveFailing in docs/runbooks.md"
            ) from None
        injection = time.time()
        # One statement, one transaction: the audit shows its xid, which the runbook restores to before.
        xid, gone = lab.sql(
            p.db, "WITH gone AS (DELETE FROM residents RETURNING 1) SELECT txid_current(), count(*) FROM gone"
        ).split("|")
        timeline.log(p.id, "injected: DELETE FROM residents (no WHERE)", f"{gone} rows, xid {xid}", injection)
        # The damage came after `injection`: recovery starts from the newest backup that ended before it.
        target = RestoreTarget("xid", xid=int(xid), time=datetime.datetime.fromtimestamp(injection, datetime.UTC))
        backup = restore_point(stanza, target, datetime.datetime.now(datetime.UTC))
        exercise.run(functools.partial(restore_before, lab, p, timeline, target, backup))
        return injection


class Failback(Scenario):
    name = "failback"
    description = "the center is rebuilt as the replica, then service switches back with no loss"
    from_backup = True
    waits_for_offices = False

    def needed(self, lab: Lab) -> set[str]:
        return {vm.name for vm in lab.topology.vms if vm.site != "center"}

    def prepare(self, lab: Lab, pairs: list[Pair], timeline: Timeline) -> None:
        """A failover cut short (a drill stopped, a step that failed) is completed first: each
        municipality is served from the backup site before its failback starts."""
        held = set(lab.run("gateway-standby", "lgcloud-service-address list").split())
        kept_at_center = set(center_gateway_record(lab))  # what the center gateway takes back at boot

        def complete(p: Pair) -> None:
            moved = p.service_address in held and p.service_address not in kept_at_center
            if moved and sealed(lab, p) and lab.sql(p.replica, "SELECT pg_is_in_recovery()") == "f":
                return
            timeline.log(p.id, "failover found unfinished", "its steps run again before failback")
            try:
                complete_failover(lab, p, timeline)
            except LabError as exc:
                raise LabError(
                    f"{p.id}'s failover could not be completed ({exc}); nothing was switched back: repair "
                    f"what this names, then run `lgcloud drill failback --stack {lab.stack}` again, or fail "
                    "the others back one by one with --municipality"
                ) from None

        with ThreadPoolExecutor(POOL) as pool:
            list(pool.map(complete, pairs))

    def inject(self, exercise: Exercise) -> float:
        injection = time.time()
        exercise.timeline.log("lab", "failback started", ", ".join(p.id for p in exercise.pairs), injection)
        center_returns(exercise.lab, exercise.pairs, exercise.timeline)
        return injection

    def __init__(self) -> None:
        self.unreplicated: dict[str, Unreplicated] = {}

    def restore(self, exercise: Exercise) -> None:
        # Bounded: each failback copies a base backup and runs commands on both gateways.
        turns = threading.BoundedSemaphore(POOL)

        def back(p: Pair) -> None:
            with turns:
                self.unreplicated[p.id] = failback(exercise.lab, p, exercise.timeline)

        for p in exercise.pairs:
            exercise.run(functools.partial(back, p))

    def judge(self, result: MunicipalityResult) -> None:
        found = self.unreplicated.get(result.id)
        if found is None:
            return
        # Listed and kept whatever the replication: asynchronous, they may have been acknowledged;
        # synchronous, they were committed at the center when it was lost and never confirmed by
        # the backup, so no office was told they were written (the site-loss drill's RPO shows that
        # no acknowledged write was lost). Neither is a loss of the failback's.
        result.unreplicated_codes, result.unreplicated_file = found.codes, found.kept_in
        result.unreplicated_records = found.records


SCENARIOS: dict[str, type[Scenario]] = {
    s.name: s for s in (SiteLoss, DbLoss, AppLoss, LinkPartition, DataCorruption, Failback)
}
