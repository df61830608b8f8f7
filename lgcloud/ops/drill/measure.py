"""What a drill measures: the data on both sides, and the clerks' logs turned into RTO, RPO and a
verdict per municipality."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ...model.codes import resident_code_is_valid
from ...model.naming import DRILL_SYSTEM
from ...model.schema import StackConfig
from ...state.failover import served_from_backup
from ..lab import Lab, LabError, Pair
from .clerk import Attempt
from .report import Integrity, MunicipalityResult, Targets

__all__ = [
    "Outcome",
    "caught_up",
    "checksum",
    "in_sync",
    "integrity",
    "judge",
    "outages",
    "present",
    "primary_of",
    "recovery",
]

# Count and MD5 of every row, in the order of its key: equal sums, equal tables.
_TABLE_SUM = "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t.ref)), '-') FROM residents t"


@dataclass
class Outcome:
    """What one office saw and what the serving database holds of it."""

    pair: Pair
    attempts: list[Attempt]
    present: set[str]  # acknowledged codes found on the surviving primary


def checksum(lab: Lab, vm: str, until: str | None = None) -> str:
    """Row count and MD5 of the residents table, or of the rows recorded up to `until`."""
    where = f" WHERE t.recorded_at <= '{until}'" if until else ""
    return lab.sql(vm, _TABLE_SUM + where)


def caught_up(lab: Lab, primary: str, replica: str, timeout: float) -> str | None:
    """Wait until the replica has replayed everything the primary had written; that position, or None."""
    target = lab.sql(primary, "SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + timeout
    while lab.sql(replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") != "t":
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return target


def in_sync(lab: Lab, primary: str, replica: str, timeout: float = 30) -> tuple[str, str]:
    """Checksums of both sides once the replica has caught up (or at `timeout`: they then differ)."""
    caught_up(lab, primary, replica, timeout)
    return checksum(lab, primary), checksum(lab, replica)


def primary_of(lab: Lab, pair: Pair) -> str:
    """The VM serving the municipality's writes now."""
    return pair.replica if pair.id in served_from_backup(lab.stack) else pair.db


def present(lab: Lab, vm: str, codes: list[str]) -> set[str]:
    """Which of the acknowledged 住民票コード the database on `vm` holds."""
    if not codes:
        return set()
    if not all(resident_code_is_valid(c) for c in codes):  # they are pasted into SQL that runs as postgres
        raise LabError(f"refusing to look up malformed 住民票コード on {vm}")
    found = lab.sql(
        vm, "SELECT resident_code FROM residents WHERE resident_code IN (" + ",".join(f"'{c}'" for c in codes) + ")"
    )
    return set(found.split())


def integrity(lab: Lab, pair: Pair, primary: str, before: dict[str, str], both_sides_before: bool) -> Integrity:
    """Rows from before the drill unchanged on the serving side; both sides equal when both run."""
    kept = checksum(lab, primary, until=before["at"])
    result = Integrity(before, kept, kept == before["primary"])
    if both_sides_before:
        result.ok = result.ok and before["primary"] == before["replica"]
    standby = pair.replica if primary == pair.db else None
    if standby and lab.running(standby):
        result.after_primary, result.after_replica = in_sync(lab, primary, standby)
        result.ok = result.ok and result.after_primary == result.after_replica
    return result


# An office is served at the end of a drill when one of its writes was acknowledged this close to
# its last attempt: on a loaded lab one unlucky last request is not an office left unserved.
SERVED_AT_END = 5.0


def recovery(attempts: list[Attempt], injection: float) -> float | None:
    """The longest time the office went without an acknowledged write, from the injection on, to
    its last attempt (failures after its last acknowledged write count as a gap too); None when
    the office was not served at the end of the drill (nothing acknowledged within SERVED_AT_END
    of its last attempt)."""
    after = sorted((a for a in attempts if a.done > injection), key=lambda a: a.done)
    acknowledged = [a.done for a in after if a.acknowledged]
    if not acknowledged or after[-1].done - acknowledged[-1] > SERVED_AT_END:
        return None
    points = [injection, *acknowledged, after[-1].done]
    return max(b - a for a, b in zip(points, points[1:]))


def outages(attempts: list[Attempt], injection: float, longer_than: float = 1.0) -> list[tuple[float, float]]:
    """When the office went without an acknowledged write for more than `longer_than` seconds,
    from the injection on: (from, to) in seconds after the injection; one still open at the end
    of the drill runs to the office's last attempt."""
    after = sorted((a for a in attempts if a.done > injection), key=lambda a: a.done)
    points = [injection, *(a.done for a in after if a.acknowledged)]
    if after and not after[-1].acknowledged:
        points.append(after[-1].done)
    return [
        (round(a - injection, 2), round(b - injection, 2)) for a, b in zip(points, points[1:]) if b - a > longer_than
    ]


def judge(
    cfg: StackConfig, outcome: Outcome, injection: float, checked: Integrity, resumed: float | None = None
) -> MunicipalityResult:
    """The municipality's RTO and RPO against its targets, and the verdict.

    With `resumed` (a recovery that rolls the data back to before the injection, and stopped the
    writes until `resumed`), the writes acknowledged after the injection and gone are rolled back,
    not lost: they are listed for re-entry. RTO then runs from the injection to the first write
    acknowledged after `resumed` that the restored database holds: service with good data."""
    p = outcome.pair
    target = cfg.sla_for(cfg.municipality(p.id), DRILL_SYSTEM)
    acked = [a for a in outcome.attempts if a.acknowledged]
    lost = [a for a in acked if a.code not in outcome.present]
    rolled_back: list[Attempt] = []
    if resumed is None:
        rto = recovery(outcome.attempts, injection)
    else:
        # Gone because written on the damaged data: acknowledged after the damage, and sent before the
        # writes stopped (a request in flight when the address was released may still be answered
        # a moment later). A write gone that was acknowledged before the damage, or sent after the
        # writes stopped, is lost.
        on_damage = [a for a in lost if a.done > injection and a.sent <= resumed]
        rolled_back, lost = on_damage, [a for a in lost if a not in on_damage]
        good = [a.done for a in acked if a.done > resumed and a.code in outcome.present]
        rto = min(good) - injection if good else None
    rpo = max(0.0, max((injection - a.done for a in lost), default=0.0))
    problems = []
    if rto is None:
        problems.append("the office was not served again")
    elif rto > target.rto_seconds:
        problems.append(f"RTO {rto:.1f} s over the target {target.rto_seconds:g} s")
    if lost and (p.replication == "sync" or rpo > target.rpo_seconds):
        problems.append(f"{len(lost)} acknowledged write(s) lost")
    if not checked.ok:
        problems.append("data before the drill changed or the sides differ")
    return MunicipalityResult(
        id=p.id,
        code=p.code,
        name=p.name,
        replication=p.replication,
        rto_seconds=None if rto is None else round(rto, 3),
        rpo_seconds=round(rpo, 3),
        lost_writes=len(lost),
        lost_codes=[a.code for a in lost if a.code],
        acknowledged_writes=len(acked),
        attempts=len(outcome.attempts),
        failed_attempts=len(outcome.attempts) - len(acked),
        targets=Targets(target.rto_seconds, target.rpo_seconds),
        integrity=checked,
        passed=not problems,
        problems=problems,
        rolled_back_codes=[a.code for a in rolled_back if a.code] if resumed is not None else None,
        outages=outages(outcome.attempts, injection),
    )
