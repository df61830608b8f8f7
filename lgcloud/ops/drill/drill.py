"""The drill: inject a disaster while the offices write, let the runbook recover, measure.

Every drill follows one script: check the lab is in the state the scenario starts from, take
checksums of the data, start a clerk at each affected office, inject, let the runbook detect and
recover on its own (it is not told when the injection happened), wait until each office is served
again, then compare the clerks' logs with the surviving databases row by row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ...model.schema import LINKAGE, StackConfig
from ...state.failover import Failover, served_from_backup
from ..lab import Lab, LabError, Pair
from .clerk import Attempt, Clerk
from .linkage import LinkageWatch
from .measure import Outcome, checksum, in_sync, integrity, judge, present, primary_of
from .report import DrillReport, MunicipalityResult
from .runbook import Step, Timeline
from .scenarios import SCENARIOS, DrillInvalid, Exercise, Scenario
from .site import POOL

T = TypeVar("T")

__all__ = ["SERVED_TIMEOUT", "run_drill"]

SERVED_TIMEOUT = 90.0  # how long an office may wait to be served again before the drill says it was not
# Registrations a second from all the drill's offices together, each clerk writing every 0.2 s at
# most: 30 offices at 5 a second are more load on two cores than the disaster, and the linkage's
# queries and the runbook would wait for the clerks. An office's RTO is read to its clerk's interval.
WRITES_PER_SECOND = 30.0


def clerk_interval(offices: int) -> float:
    """Seconds between one clerk's registrations when `offices` clerks write at once."""
    return max(0.2, offices / WRITES_PER_SECOND)


def run_drill(
    cfg: StackConfig,
    scenario: str,
    municipality: str | None = None,
    on_step: Callable[[Step], None] = lambda step: None,
) -> DrillReport:
    """Run one drill on the stack's lab and return its report (not yet written)."""
    if scenario not in SCENARIOS:
        raise DrillInvalid(f"unknown scenario {scenario!r}; scenarios: {', '.join(SCENARIOS)}")
    lab = Lab(cfg)
    try:
        return _drill(lab, cfg, SCENARIOS[scenario](), municipality, Timeline(on_step=on_step))
    finally:
        lab.close()


def _preflight(lab: Lab, scenario: Scenario, pairs: list[Pair]) -> None:
    try:
        stopped = sorted(vm for vm in scenario.needed(lab) if not lab.running(vm))
    except LabError as exc:
        raise DrillInvalid(str(exc)) from None
    if stopped:
        raise DrillInvalid(f"VMs not running: {', '.join(stopped)}; run `lgcloud up --stack {lab.stack}`")
    if not scenario.from_backup:
        for p in pairs:
            query = f"SELECT state, sync_state FROM pg_stat_replication WHERE application_name = '{p.slot}'"
            state, _, sync_state = lab.sql(p.db, query).partition("|")
            if state != "streaming":
                raise DrillInvalid(
                    f"{p.replica} does not stream from {p.db}; run `lgcloud configure --stack {lab.stack}`"
                )
            if sync_state != p.replication:  # a sync municipality replicating async would lose writes
                raise DrillInvalid(
                    f"{p.replica} replicates {sync_state} from {p.db}, declared {p.replication}; "
                    f"run `lgcloud configure --stack {lab.stack}`"
                )


def _drill(lab: Lab, cfg: StackConfig, scenario: Scenario, municipality: str | None, timeline: Timeline) -> DrillReport:
    pairs = scenario.affected(lab, municipality)
    _preflight(lab, scenario, pairs)
    scenario.prepare(lab, pairs, timeline)
    started = time.time()
    # 番号連携 watched through the drill: a moved person, asked about every second. Set up first,
    # so that the checksums below count the person's registrations.
    linkage = LinkageWatch.among(lab, pairs) if scenario.watches_linkage else None
    try:
        return _watched(lab, cfg, scenario, pairs, timeline, started, linkage)
    finally:
        if linkage is not None:
            linkage.stop()  # whatever stopped the drill: no query goes on asking afterwards


def _watched(
    lab: Lab,
    cfg: StackConfig,
    scenario: Scenario,
    pairs: list[Pair],
    timeline: Timeline,
    started: float,
    linkage: LinkageWatch | None,
) -> DrillReport:
    if linkage is not None:
        linkage.start()
        timeline.log(
            "lab",
            "linkage watched",
            f"{linkage.requester.id} asks {linkage.provider.id} for a moved person's income every second",
        )

    # Data before: both sides agree (or, on failback, the serving side's rows as they are).
    def taken(p: Pair) -> dict[str, str]:
        primary = primary_of(lab, p)
        snapshot = lab.sql(primary, "SELECT now()")
        if scenario.from_backup:
            return {"at": snapshot, "primary": checksum(lab, primary)}
        a, b = in_sync(lab, p.db, p.replica)
        return {"at": snapshot, "primary": a, "replica": b}

    before = _each(pairs, taken)
    timeline.log("lab", "checksums taken", ", ".join(f"{k}: {v['primary'].split()[0]} rows" for k, v in before.items()))

    clerks = {p.id: Clerk(lab, p.id, clerk_interval(len(pairs))) for p in pairs}
    try:
        _each(pairs, lambda p: clerks[p.id].start())
        injection, errors = _exercise(lab, scenario, pairs, clerks, timeline, linkage)
        time.sleep(1.0)  # a last second of writes on the recovered service
    finally:
        attempts = _each(pairs, lambda p: _stop(clerks[p.id]))
        queries = linkage.stop() if linkage is not None else []
    timeline.log("lab", "clerks stopped", ", ".join(f"{k}: {len(v)} attempts" for k, v in attempts.items()))
    linked = None
    if linkage is not None:
        target = cfg.sla_for(cfg.municipality(linkage.requester.id), LINKAGE).rto_seconds
        linked = linkage.judge(queries, injection, target)

    def judged(p: Pair) -> MunicipalityResult:
        primary = primary_of(lab, p)
        codes = [a.code for a in attempts[p.id] if a.code]
        outcome = Outcome(p, attempts[p.id], present(lab, primary, codes))
        checked = integrity(lab, p, primary, before[p.id], not scenario.from_backup)
        resumed = _writes_resumed(timeline, p.id) if scenario.rolls_back else None
        result = judge(cfg, outcome, injection, checked, resumed)
        scenario.judge(result)
        return result

    results = list(_each(pairs, judged).values())
    return DrillReport(
        scenario=scenario.name,
        description=scenario.description,
        stack=lab.stack,
        started=started,
        injection=injection,
        finished=time.time(),
        passed=not errors and all(r.passed for r in results) and (linked is None or linked.passed),
        errors=errors,
        municipalities=results,
        linkage=linked,
        timeline=list(timeline.steps),
        state_after=_state_after(lab.stack, served_from_backup(lab.stack)),
    )


def _each(pairs: list[Pair], work: Callable[[Pair], T]) -> dict[str, T]:
    """`work` for every municipality, a few at a time (each is SSH to VMs of its own), in order."""
    with ThreadPoolExecutor(POOL) as pool:
        return dict(zip((p.id for p in pairs), pool.map(work, pairs)))


def _writes_resumed(timeline: Timeline, municipality: str) -> float:
    """When the runbook had stopped the municipality's writes: from then on, only good data is served."""
    stopped = [s for s in timeline.steps if s.municipality == municipality and s.name == "stop writes"]
    if not stopped:
        raise LabError(f"the runbook never stopped {municipality}'s writes; the drill cannot tell good data from bad")
    return stopped[0].at + (stopped[0].seconds or 0.0)


def _stop(clerk: Clerk) -> list[Attempt]:
    try:
        return clerk.stop()
    except LabError:  # a terminal that cannot be reached: its clerk wrote nothing we can count
        return []


def _exercise(
    lab: Lab,
    scenario: Scenario,
    pairs: list[Pair],
    clerks: dict[str, Clerk],
    timeline: Timeline,
    linkage: LinkageWatch | None,
) -> tuple[float, list[str]]:
    """Warm up, inject, let the runbook recover, wait until the offices are served again."""
    warm = time.time()
    for p in pairs:
        if not clerks[p.id].wait_served(warm, 30):
            raise LabError(f"{p.terminal} gets no acknowledged write before the drill; check `lgcloud status`")
    if linkage is not None and not linkage.wait_served(warm, 30):
        raise LabError(f"{linkage.requester.id}'s 税 gets no answered query before the drill; check `lgcloud status`")
    interval = clerk_interval(len(clerks))
    timeline.log("lab", "clerks writing", f"{len(clerks)} office(s), one registration every {interval:.2f} s each")
    time.sleep(1.0)

    with ThreadPoolExecutor(max(4, len(pairs) * 2)) as pool:
        exercise = Exercise(lab, pairs, timeline, pool)
        try:
            scenario.watch(exercise)
            if exercise.tasks:
                time.sleep(0.3)  # the watchers have their first heartbeats
            injection = scenario.inject(exercise)
            scenario.restore(exercise)
            if scenario.waits_for_offices:
                # One deadline for all: an office not served does not add its wait to the next one's.
                deadline = time.monotonic() + SERVED_TIMEOUT

                def left() -> float:
                    return max(0.0, deadline - time.monotonic())

                for p in pairs:
                    if not clerks[p.id].wait_served(injection, left()):
                        exercise.errors.append(f"{p.terminal} was not served again within {SERVED_TIMEOUT:.0f} s")
                if linkage is not None and not linkage.wait_served(injection, left()):
                    exercise.errors.append(f"the linkage did not answer again within {SERVED_TIMEOUT:.0f} s")
        finally:
            exercise.stop.set()  # watchers that never saw a miss end here, whatever happened
        for task in exercise.tasks:
            task.result(timeout=600)
    return injection, exercise.errors


def _state_after(stack: str, served: dict[str, Failover]) -> str:
    if not served:
        return "normal: every municipality is served from the center, replicated to the backup site"
    return (
        f"served from the backup site: {', '.join(served)} (the center's databases are fenced: stopped or "
        f"cut off, standby.signal on disk). `lgcloud configure` refuses to run in this state; "
        f"`lgcloud drill failback --stack {stack}` rebuilds the center and switches back"
    )
