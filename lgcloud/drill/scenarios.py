"""The drills: inject a disaster while the offices write, let the runbook recover, measure.

Every drill follows one script: check the lab is in the state the scenario starts from, take
checksums of the data, start a clerk at each affected office, inject, let the runbook detect and
recover on its own (it is not told when the injection happened), wait until each office is served
again, then compare the clerks' logs with the surviving databases row by row.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from ..config import StackConfig
from .lab import Lab, LabError, Pair
from .load import Attempt, Clerk
from .runbook import Step, Timeline, center_returns, detect, failback, failover, failover_state, restart_app

__all__ = ["SCENARIOS", "DrillInvalid", "run"]

SCENARIOS = {
    "site-loss": "the whole center is lost while the offices write; every municipality fails over",
    "db-loss": "one municipality's primary database VM dies; that municipality fails over",
    "app-loss": "one municipality's app VM dies; its hypervisor starts it again",
    "link-partition": "interconnect is cut between the sites for 10 s, then restored; nobody fails over: "
                      "synchronous municipalities' writes stall (never acknowledged, so never lost) until the "
                      "link returns, asynchronous ones go on",
    "failback": "the center is rebuilt as the replica, then service switches back with no loss",
}
PARTITION_SECONDS = 10.0
SERVED_TIMEOUT = 90.0


class DrillInvalid(Exception):
    """The drill cannot start from here (bad argument or lab state); nothing was changed."""


@dataclass
class Outcome:
    pair: Pair
    attempts: list[Attempt]
    present: set[str]  # acknowledged codes found on the surviving primary


def _affected(lab: Lab, scenario: str, municipality: str | None) -> list[Pair]:
    state = failover_state(lab.stack)
    if municipality:
        try:
            chosen = [lab.pair(municipality)]
        except LabError as exc:
            raise DrillInvalid(str(exc)) from None
    if scenario == "failback":
        if not state:
            raise DrillInvalid("every municipality is served from the center already: nothing to fail back")
        pairs = chosen if municipality else [lab.pairs[m] for m in state if m in lab.pairs]
        for p in pairs:
            if p.id not in state:
                raise DrillInvalid(f"{p.id} is served from the center already; failed over: {', '.join(state)}")
        return pairs
    if state:
        raise DrillInvalid(f"served from the backup site since an earlier drill: {', '.join(state)}; "
                           f"run `lgcloud drill failback --stack {lab.stack}` first")
    if scenario in ("site-loss", "link-partition"):
        if municipality:
            raise DrillInvalid(f"{scenario} affects every municipality; drop --municipality")
        return list(lab.pairs.values())
    if municipality:
        return chosen
    return [next((p for p in lab.pairs.values() if p.replication == "sync"), next(iter(lab.pairs.values())))]


def _preflight(lab: Lab, scenario: str, pairs: list[Pair]) -> None:
    needed = {vm.name for vm in lab.topology.vms}
    if scenario == "failback":
        needed -= {vm.name for vm in lab.topology.vms if vm.site == "center"}
    try:
        stopped = sorted(vm for vm in needed if not lab.running(vm))
    except LabError as exc:
        raise DrillInvalid(str(exc)) from None
    if stopped:
        raise DrillInvalid(f"VMs not running: {', '.join(stopped)}; run `lgcloud up --stack {lab.stack}`")
    if scenario != "failback":
        for p in pairs:
            if lab.sql(p.db, f"SELECT state FROM pg_stat_replication WHERE application_name = '{p.slot}'") != "streaming":
                raise DrillInvalid(f"{p.replica} does not stream from {p.db}; run `lgcloud configure --stack {lab.stack}`")


# --- data checks ---

_TABLE_SUM = ("SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t.resident_code)), '-') "
              "FROM residents t")


def _checksum(lab: Lab, vm: str, until: str | None = None) -> str:
    where = f" WHERE t.recorded_at <= '{until}'" if until else ""
    return lab.sql(vm, _TABLE_SUM + where)


def _caught_up(lab: Lab, primary: str, replica: str, timeout: float) -> str | None:
    """Wait until the replica has replayed everything the primary had written; that position, or None."""
    target = lab.sql(primary, "SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + timeout
    while lab.sql(replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") != "t":
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return target


def _in_sync(lab: Lab, primary: str, replica: str, timeout: float = 30) -> tuple[str, str]:
    """Checksums of both sides once the replica has caught up (or at `timeout`: they then differ)."""
    _caught_up(lab, primary, replica, timeout)
    return _checksum(lab, primary), _checksum(lab, replica)


def _primary_of(lab: Lab, pair: Pair) -> str:
    return pair.replica if pair.id in failover_state(lab.stack) else pair.db


def _present(lab: Lab, vm: str, codes: list[str]) -> set[str]:
    if not codes:
        return set()
    found = lab.sql(vm, "SELECT resident_code FROM residents WHERE resident_code IN ("
                        + ",".join(f"'{c}'" for c in codes) + ")")
    return set(found.split())


# --- measurement ---

def _recovery(attempts: list[Attempt], injection: float) -> float | None:
    """The longest time the office went without an acknowledged write, from the injection on;
    None when the office was not served at the end of the drill."""
    after = sorted((a for a in attempts if a.done > injection), key=lambda a: a.done)
    if not after or not after[-1].acknowledged:
        return None
    points = [injection, *(a.done for a in after if a.acknowledged)]
    return max(b - a for a, b in zip(points, points[1:]))


def _judge(cfg: StackConfig, outcome: Outcome, injection: float, integrity: dict) -> dict:
    p = outcome.pair
    m = cfg.municipality(p.id)
    target = cfg.sla_for(m, "jumin")
    acked = [a for a in outcome.attempts if a.acknowledged]
    lost = [a for a in acked if a.code not in outcome.present]
    rto = _recovery(outcome.attempts, injection)
    rpo = max((injection - a.done for a in lost), default=0.0) if lost else 0.0
    rpo = max(rpo, 0.0)
    problems = []
    if rto is None:
        problems.append("the office was not served again")
    elif rto > target.rto_seconds:
        problems.append(f"RTO {rto:.1f} s over the target {target.rto_seconds:g} s")
    if lost and (p.replication == "sync" or rpo > target.rpo_seconds):
        problems.append(f"{len(lost)} acknowledged write(s) lost")
    if not integrity.get("ok", False):
        problems.append("data before the drill changed or the sides differ")
    return {
        "id": p.id, "code": p.code, "name": p.name, "replication": p.replication,
        "rto_seconds": None if rto is None else round(rto, 3),
        "rpo_seconds": round(rpo, 3), "lost_writes": len(lost), "lost_codes": [a.code for a in lost],
        "acknowledged_writes": len(acked), "attempts": len(outcome.attempts),
        "failed_attempts": len(outcome.attempts) - len(acked),
        "targets": {"rto_seconds": target.rto_seconds, "rpo_seconds": target.rpo_seconds},
        "integrity": integrity, "passed": not problems, "problems": problems,
    }


# --- the drill ---

def run(cfg: StackConfig, scenario: str, municipality: str | None = None,
        on_step: Callable[[Step], None] = lambda step: None) -> dict:
    if scenario not in SCENARIOS:
        raise DrillInvalid(f"unknown scenario {scenario!r}; scenarios: {', '.join(SCENARIOS)}")
    lab = Lab(cfg)
    try:
        return _drill(lab, cfg, scenario, municipality, Timeline(on_step=on_step))
    finally:
        lab.close()


def _drill(lab: Lab, cfg: StackConfig, scenario: str, municipality: str | None, timeline: Timeline) -> dict:
    pairs = _affected(lab, scenario, municipality)
    _preflight(lab, scenario, pairs)
    started = time.time()
    lab_step = "lab"

    # Data before: both sides agree (or, on failback, the serving side's rows as they are).
    before: dict[str, dict] = {}
    for p in pairs:
        primary = _primary_of(lab, p)
        snapshot = lab.sql(primary, "SELECT now()")
        if scenario == "failback":
            before[p.id] = {"at": snapshot, "primary": _checksum(lab, primary)}
        else:
            a, b = _in_sync(lab, p.db, p.replica)
            before[p.id] = {"at": snapshot, "primary": a, "replica": b}
    timeline.log(lab_step, "checksums taken", ", ".join(f"{k}: {v['primary'].split()[0]} rows" for k, v in before.items()))

    clerks = {p.id: Clerk(lab, p.id) for p in pairs}
    try:
        for clerk in clerks.values():
            clerk.start()
        injection, errors, extra = _exercise(lab, scenario, pairs, clerks, timeline)
        time.sleep(1.0)  # a last second of writes on the recovered service
    finally:
        attempts = {p.id: _stop(clerks[p.id]) for p in pairs}
    timeline.log(lab_step, "clerks stopped", ", ".join(f"{k}: {len(v)} attempts" for k, v in attempts.items()))

    results = []
    for p in pairs:
        primary = _primary_of(lab, p)
        codes = [a.code for a in attempts[p.id] if a.acknowledged]
        outcome = Outcome(p, attempts[p.id], _present(lab, primary, codes))
        integrity = _integrity(lab, scenario, p, primary, before[p.id])
        results.append(_judge(cfg, outcome, injection, integrity))
    if scenario == "link-partition":
        for r in results:
            samples = extra["primaries"][r["id"]]
            if any(s != 1 for s in samples):
                r["passed"] = False
                r["problems"].append("more or fewer than one primary was seen during the partition")
            r["primaries_seen"] = sorted(set(samples))
    finished = time.time()
    state = failover_state(lab.stack)
    return {
        "scenario": scenario, "description": SCENARIOS[scenario], "stack": lab.stack,
        "started": started, "injection": injection, "finished": finished,
        "passed": not errors and all(r["passed"] for r in results),
        "errors": errors, "municipalities": results,
        "timeline": [vars(s) for s in timeline.steps],
        "state_after": _state_after(lab, state),
    }


def _stop(clerk: Clerk) -> list[Attempt]:
    try:
        return clerk.stop()
    except LabError:  # a terminal that cannot be reached: its clerk wrote nothing we can count
        return []


def _exercise(lab: Lab, scenario: str, pairs: list[Pair], clerks: dict[str, Clerk],
              timeline: Timeline) -> tuple[float, list[str], dict]:
    """Warm up, inject, let the runbook recover, wait until the offices are served again."""
    warm = time.time()
    for p in pairs:
        if not clerks[p.id].wait_served(warm, 30):
            raise LabError(f"{p.terminal} gets no acknowledged write before the drill; check `lgcloud status`")
    timeline.log("lab", "clerks writing", f"{len(clerks)} office(s), one registration every 0.2 s each")
    time.sleep(1.0)

    stop = threading.Event()
    errors: list[str] = []
    extra: dict = {}

    def guarded(task: Callable[[], None]) -> Callable[[], None]:
        def run_task():
            try:
                task()
            except Exception as exc:  # noqa: BLE001 - a failed step fails the drill, reported
                errors.append(f"{exc.__class__.__name__}: {exc}")
        return run_task

    def watch_and_fail_over(p: Pair, vm: str, recover: Callable[[Lab, Pair, Timeline], None]):
        def task():
            noticed = detect(lab, vm, stop)
            if noticed is None:
                return
            timeline.log(p.id, "detected", f"{vm} missed its heartbeats", noticed)
            recover(lab, p, timeline)
        return task

    with ThreadPoolExecutor(max(4, len(pairs) * 2)) as pool:
        futures = []
        injection = time.time()
        if scenario == "site-loss":
            futures = [pool.submit(guarded(watch_and_fail_over(p, p.db, lambda l, q, t: failover(l, q, t, scenario))))
                       for p in pairs]
            time.sleep(0.3)
            injection = time.time()
            center = [vm.name for vm in lab.topology.vms if vm.site == "center"]
            with ThreadPoolExecutor(len(center)) as killers:  # the whole site at once, not one by one
                list(killers.map(lab.kill, center))
            timeline.log("lab", "injected: center lost", f"{len(center)} VMs powered off", injection)
        elif scenario == "db-loss":
            p = pairs[0]
            futures = [pool.submit(guarded(watch_and_fail_over(p, p.db, lambda l, q, t: failover(l, q, t, scenario))))]
            time.sleep(0.3)
            injection = time.time()
            lab.kill(p.db)
            timeline.log(p.id, f"injected: {p.db} lost", "powered off", injection)
        elif scenario == "app-loss":
            p = pairs[0]
            futures = [pool.submit(guarded(watch_and_fail_over(p, p.app, restart_app)))]
            time.sleep(0.3)
            injection = time.time()
            lab.kill(p.app)
            timeline.log(p.id, f"injected: {p.app} lost", "powered off", injection)
        elif scenario == "link-partition":
            # The runbook keeps watching the primaries: a cut link must not make it fail over.
            futures = [pool.submit(guarded(watch_and_fail_over(p, p.db, lambda l, q, t: failover(l, q, t, scenario))))
                       for p in pairs]
            injection = time.time()
            extra["primaries"] = _partition(lab, pairs, timeline, injection)
        elif scenario == "failback":
            injection = time.time()
            timeline.log("lab", "failback started", ", ".join(p.id for p in pairs), injection)
            center_returns(lab, pairs, timeline)
            futures = [pool.submit(guarded(lambda p=p: failback(lab, p, timeline))) for p in pairs]

        if scenario != "failback":  # failback's own steps end with the office served
            for p in pairs:
                if not clerks[p.id].wait_served(injection, SERVED_TIMEOUT):
                    errors.append(f"{p.terminal} was not served again within {SERVED_TIMEOUT:.0f} s")
        stop.set()
        for f in futures:
            f.result(timeout=600)
    return injection, errors, extra

def _integrity(lab: Lab, scenario: str, p: Pair, primary: str, before: dict) -> dict:
    """Rows from before the drill unchanged on the serving side; both sides equal when both run."""
    kept = _checksum(lab, primary, until=before["at"])
    result = {"before": before, "kept_rows_after": kept, "ok": kept == before["primary"]}
    if scenario != "failback":
        result["ok"] = result["ok"] and before["primary"] == before["replica"]
    standby = p.replica if primary == p.db else None
    if standby and lab.running(standby):
        a, b = _in_sync(lab, primary, standby)
        result.update(after_primary=a, after_replica=b, ok=result["ok"] and a == b)
    return result


def _partition(lab: Lab, pairs: list[Pair], timeline: Timeline, injection: float) -> dict[str, list[int]]:
    """Cut the backup site's replicas from interconnect, sample who is primary, restore."""
    for p in pairs:
        lab.cut(p.replica, "interconnect")
    timeline.log("lab", "injected: interconnect cut", f"{len(pairs)} replica port(s) down", injection)
    samples: dict[str, list[int]] = {p.id: [] for p in pairs}
    deadline = time.time() + PARTITION_SECONDS
    while time.time() < deadline:
        for p in pairs:
            primaries = sum(lab.sql(vm, "SELECT NOT pg_is_in_recovery()") == "t" for vm in (p.db, p.replica))
            samples[p.id].append(primaries)
        time.sleep(0.5)
    restored = time.time()
    for p in pairs:
        lab.plug(p.replica, "interconnect")
    timeline.log("lab", "interconnect restored", f"after {restored - injection:.1f} s", restored)
    for p in pairs:
        with timeline.step(p.id, "replica catches up") as note:
            target = _caught_up(lab, p.db, p.replica, 60)
            if target is None:
                raise LabError(f"{p.replica} did not catch up within 60 s of the link's return")
            note(f"{p.replica} replayed up to {target}")
    return samples


def _state_after(lab: Lab, state: dict) -> str:
    if not state:
        return "normal: every municipality is served from the center, replicated to the backup site"
    return (f"served from the backup site: {', '.join(state)} (the center's databases are fenced: stopped or "
            f"cut off, standby.signal on disk). `lgcloud configure` refuses to run in this state; "
            f"`lgcloud drill failback --stack {lab.stack}` rebuilds the center and switches back")
