"""Failover and failback of one municipality, as runbook code: each step timed and logged.

The unit of failover is a municipality: its primary database, its app and its service address
move together between the center and the backup site; which site serves it is recorded in the
stack's state (``lgcloud.state.failover``) before the first step.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import docker

from ...model.codes import resident_code_is_valid
from ...model.naming import CHUKAN_DATABASE, CHUKAN_ROLE, REPLACED_GENERATIONS, identifier
from ...state.failover import Failover, record_failback, record_failover
from ...state.unreplicated import keep_unreplicated
from ..backup import RestoreTarget
from ..chain import tenant_base
from ..lab import PG_BIN, PG_DATA, REPLICATION_USER, Lab, LabError, Pair

__all__ = [
    "Step",
    "Timeline",
    "Unreplicated",
    "archive_current_wal",
    "archived",
    "center_gateway_record",
    "center_returns",
    "complete_failover",
    "detect",
    "failback",
    "failover",
    "fence",
    "promote",
    "release_at_center",
    "restart_app",
    "restore_before",
    "seal",
    "sealed",
    "take_at_backup",
    "verify",
    "wait_promoted",
]


@dataclass
class Step:
    at: float  # epoch seconds
    municipality: str
    name: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Timeline:
    steps: list[Step] = field(default_factory=list)
    on_step: Callable[[Step], None] = lambda step: None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, municipality: str, name: str, detail: str = "", started: float | None = None) -> Step:
        now = time.time()
        step = Step(started or now, municipality, name, detail, now - started if started else 0.0)
        with self._lock:
            self.steps.append(step)
        self.on_step(step)
        return step

    @contextmanager
    def step(self, municipality: str, name: str) -> Iterator[Callable[[str], None]]:
        """Time a step: ``with timeline.step(m, "promote") as note: note("…")``."""
        started, detail = time.time(), [""]
        try:
            yield lambda text: detail.__setitem__(0, text)
        except BaseException as error:
            self.log(municipality, name, f"FAILED: {error}", started)
            raise
        self.log(municipality, name, detail[0], started)


# --- detection ---


def detect(lab: Lab, vm: str, stop: threading.Event, misses: int = 2, interval: float = 0.2) -> float | None:
    """Watch a VM's heartbeat until `misses` in a row fail; the time of the first miss, or None if stopped."""
    missed, first = 0, None
    while not stop.is_set():
        began = time.time()
        if lab.alive(vm, timeout=0.3):
            missed, first = 0, None
        else:
            missed, first = missed + 1, first or began
            if missed >= misses:
                return first
        stop.wait(max(0.0, interval - (time.time() - began)))
    return None


# --- failover ---
#
# Each step is safe to run again on a lab where it (or the whole failover) already ran: a
# failover cut short is completed by running it again (`complete_failover`, which failback does
# first), and a site-level runbook (`site`) runs the same steps for many municipalities at once.

_RECORD = "/etc/lgcloud/service-addresses"
_record_lock = threading.Lock()  # a lost gateway's record is rewritten through its disk: one writer


def fence(lab: Lab, pair: Pair) -> str:
    """STONITH: the center's primary is stopped before anything else is promoted, and sealed so
    that, powered on again, it can only come up read-only and cut off."""
    lab.kill(pair.db)
    seal(lab, pair)
    return "stopped; standby.signal written to its disk; ports on its closed segment and interconnect cut"


def seal(lab: Lab, pair: Pair) -> None:
    """On a stopped primary's disk and ports, through the hypervisor: standby.signal, and no port
    on its closed segment or interconnect."""
    # Its ports are cut once its engine has it stopped: one powered off by the kernel a moment ago
    # is still being torn down, and a port cut meanwhile may be left held (the network then
    # refuses removal at `down`).
    lab.wait_stopped(pair.db)
    lab.write_file(pair.db, f"{PG_DATA}/standby.signal", b"", 0o600, uid=_postgres_uid(lab, pair.replica))
    for segment in (f"{pair.id}-center", "interconnect"):
        lab.cut(pair.db, segment)


def sealed(lab: Lab, pair: Pair) -> bool:
    """Whether the center primary is stopped and sealed (`fence` done)."""
    if lab.running(pair.db) or any(lab.attached(pair.db, s) for s in (f"{pair.id}-center", "interconnect")):
        return False
    try:
        lab.read_file(pair.db, f"{PG_DATA}/standby.signal")
    except (LabError, docker.errors.NotFound):
        return False
    return True


def promote(lab: Lab, pair: Pair) -> str:
    """The backup replica made primary (already one: nothing to do); what it is now."""
    # One statement: the promotion (a CTE with a volatile call runs first) and the new timeline.
    done, _, walfile = lab.sql(
        pair.replica,
        "WITH promoted AS (SELECT CASE WHEN NOT pg_is_in_recovery() THEN 'was primary already' "
        "WHEN pg_promote(true, 30) THEN 'is primary' ELSE 'timed out' END AS done) "
        "SELECT done, CASE WHEN done <> 'timed out' THEN pg_walfile_name(pg_current_wal_lsn()) END FROM promoted",
    ).partition("|")
    if done == "timed out":
        raise LabError(f"{pair.replica} did not finish promotion within 30 s")
    return f"{pair.replica} {done} (timeline {int(walfile[:8], 16)}); no standby until failback"


def release_at_center(lab: Lab, addresses: list[str]) -> str:
    """The center gateway must not answer on the addresses again, now or after it comes back."""
    listed = " ".join(addresses)
    if lab.running("gateway") and lab.alive("gateway"):
        lab.run("gateway", f"lgcloud-service-address release {listed}", timeout=10)
        return f"{listed} released by the running center gateway"
    # Fence the lost gateway on its disk: at boot it takes back only what its record lists.
    with _record_lock:
        held = center_gateway_record(lab)
        kept = [a for a in held if a not in addresses]
        lab.write_file("gateway", _RECORD, "".join(f"{a}\n" for a in sorted(kept)).encode())
    return f"{listed} struck from the lost gateway's record"


def center_gateway_record(lab: Lab) -> list[str]:
    """The addresses the center gateway holds again whenever it boots, read from its disk."""
    return lab.read_file("gateway", _RECORD).decode().split()


def take_at_backup(lab: Lab, addresses: list[str]) -> str:
    """The backup gateway holds the addresses: one command, one burst of gratuitous ARP."""
    lab.run("gateway-standby", f"lgcloud-service-address take {' '.join(addresses)}", timeout=30)
    return f"{' '.join(addresses)} held by gateway-standby, announced by gratuitous ARP"


def failover(lab: Lab, pair: Pair, timeline: Timeline, scenario: str) -> None:
    """Fence the center's primary, promote the backup replica, move the service address, verify."""
    # Recorded first: a failover cut short still leaves a state that `drill failback` repairs.
    record_failover(lab.stack, pair.id, Failover(time.time(), scenario, fenced=(pair.db,)))
    complete_failover(lab, pair, timeline)


def complete_failover(lab: Lab, pair: Pair, timeline: Timeline) -> None:
    """Every step of a failover recorded for `pair`, each one done again or for the first time."""
    with timeline.step(pair.id, "fence the center primary") as note:
        note(fence(lab, pair))
    with timeline.step(pair.id, "promote the backup replica") as note:
        note(promote(lab, pair))
    with timeline.step(pair.id, "release service address at the center") as note:
        note(release_at_center(lab, [pair.service_address]))
    with timeline.step(pair.id, "take service address at the backup") as note:
        note(take_at_backup(lab, [pair.service_address]))
    verify(lab, pair, timeline, "primary")


def verify(lab: Lab, pair: Pair, timeline: Timeline, expected: str, timeout: float = 20) -> None:
    """From the office, as a clerk: the service answers and its database is writable."""
    with timeline.step(pair.id, "verify from the office") as note:
        deadline = time.monotonic() + timeout
        while True:
            out = lab.run(pair.terminal, f"curl -s -m 2 {pair.url}/healthz || true", timeout=10)
            if f'"database": "{expected}"' in out or f'"database":"{expected}"' in out:
                note(f"{pair.url}/healthz from {pair.terminal}: {expected}")
                return
            if time.monotonic() > deadline:
                raise LabError(f"{pair.terminal} does not get a {expected} from {pair.url}: {out.strip()[:200]}")
            time.sleep(0.3)


_UID: dict[str, int] = {}


def _postgres_uid(lab: Lab, vm: str) -> int:
    """postgres' uid, read from a running VM of the same image (the target may be off)."""
    if "postgres" not in _UID:
        _UID["postgres"] = int(lab.run(vm, "id -u postgres").strip())
    return _UID["postgres"]


# --- failback ---


_LSN = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")


def _control_data(lab: Lab, vm: str) -> dict[str, str]:
    """A database VM's control file (pg_controldata), running or not. Its WAL positions go into
    queries on the other side of a pair, so they are checked for their form here."""
    output = lab.run(vm, f"LC_ALL=C chpst -u postgres {PG_BIN}/pg_controldata -D {PG_DATA}")
    control = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in output.splitlines())}
    for key in ("Latest checkpoint location", "Minimum recovery ending location"):
        if not _LSN.fullmatch(control.get(key, "")):
            raise LabError(f"{vm}: its control file shows no {key.lower()}: {control.get(key)!r}")
    return control


def _position(lab: Lab, vm: str) -> tuple[int, str]:
    """How far a database VM's cluster got: its timeline and the furthest WAL position it holds
    (its last checkpoint, or where its recovery must reach)."""
    control = _control_data(lab, vm)
    positions = [control["Latest checkpoint location"], control["Minimum recovery ending location"]]
    furthest = max(positions, key=lambda lsn: tuple(int(part, 16) for part in lsn.split("/")))
    return int(control["Latest checkpoint's TimeLineID"]), furthest


def _base_backup(lab: Lab, target: str, source: str, slot: str) -> None:
    """Make `target` a fresh streaming standby of the primary on `source`, over interconnect.

    Only once `source` is verified a primary whose history `target` has nothing beyond: a newer
    timeline, or the same one no further along. The cluster `target` had is moved aside, not deleted."""
    if lab.sql(source, "SELECT pg_is_in_recovery()") != "f":
        raise LabError(f"{source} is not a primary; {target} keeps its data and is not rebuilt from it")
    newer = int(lab.sql(source, "SELECT pg_walfile_name(pg_current_wal_lsn())")[:8], 16)
    lab.run(target, "sv -w 60 stop postgresql >/dev/null || true", timeout=90)
    timeline, reached = _position(lab, target)
    behind = timeline < newer or (
        timeline == newer and lab.sql(source, f"SELECT '{reached}'::pg_lsn <= pg_current_wal_lsn()") == "t"
    )
    if not behind:
        raise LabError(
            f"{target} holds WAL beyond {source} (timeline {timeline} at {reached}, {source} on {newer}); "
            f"{target} keeps its data and is not rebuilt (start its postgresql to serve it again)"
        )
    _move_aside(lab, target)
    lab.script(
        target,
        "base-backup.sh",
        PG_BIN,
        PG_DATA,
        lab.topology.vm(source).addresses["interconnect"],
        REPLICATION_USER,
        slot,
        stdin=lab.replication_password() + "\n",
        timeout=300,
    )
    lab.run(target, "sv -w 60 start postgresql >/dev/null", timeout=90)


def _move_aside(lab: Lab, vm: str, stamp: str = "") -> None:
    """The stopped cluster on `vm` moved aside (the newest REPLACED_GENERATIONS kept), an empty one in its place."""
    lab.script(vm, "move-aside.sh", PG_DATA, str(REPLACED_GENERATIONS), stamp or time.strftime("%Y%m%dT%H%M%S"))


def _follow(lab: Lab, target: str, source_address: str, slot: str) -> None:
    """Make a cleanly stopped former primary a standby of the new one, without copying data.

    The new primary replayed the old one's final checkpoint before its promotion, so the old
    one's history is a prefix of the new timeline and it can follow it from where it stopped."""
    lab.script(
        target,
        "follow-primary.sh",
        PG_DATA,
        source_address,
        REPLICATION_USER,
        slot,
        stdin=lab.replication_password() + "\n",
        timeout=30,
    )
    lab.run(target, "sv -w 60 start postgresql >/dev/null", timeout=90)


def _ensure_slot(lab: Lab, vm: str, slot: str) -> None:
    lab.sql(
        vm,
        f"SELECT pg_create_physical_replication_slot('{slot}', true) "
        f"WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}')",
    )


def _wait_streaming(lab: Lab, primary: str, slot: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while lab.sql(primary, f"SELECT state FROM pg_stat_replication WHERE application_name = '{slot}'") != "streaming":
        if time.monotonic() > deadline:
            raise LabError(f"the standby {slot} does not stream from {primary} after {timeout:.0f} s")
        time.sleep(0.3)


def _wait_backend_up(lab: Lab, gateway: str, pair: Pair, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    backend = f"jumin_{identifier(pair.id)}"
    while True:
        csv = lab.run(gateway, f"curl -s -m 2 'http://{lab.mgmt(gateway)}:8404/stats;csv'", timeout=10)
        rows = [line.split(",") for line in csv.splitlines() if line.startswith(backend + ",")]
        if any(r[1] not in ("FRONTEND", "BACKEND") and r[17].startswith("UP") for r in rows):
            return
        if time.monotonic() > deadline:
            raise LabError(f"{gateway} does not see {pair.id}'s app UP after {timeout:.0f} s")
        time.sleep(0.3)


def center_returns(lab: Lab, pairs: list[Pair], timeline: Timeline) -> None:
    """Power on whatever is off at the center; fenced databases come up read-only. The VMs boot
    yielding the cores to the backup site, which serves every office meanwhile: at 30
    municipalities, 64 VMs booting at their full share left the offices unserved for a minute. A
    VM left yielding by a failback that stopped part-way has its full share again at its next boot."""
    with timeline.step("lab", "start the center's VMs") as note:
        for pair in pairs:
            lab.plug(pair.db, "interconnect")  # a VM's firewall is placed at boot, on the ports it has
        center = [vm.name for vm in lab.topology.vms if vm.site == "center"]
        off = [vm for vm in center if not lab.running(vm)]

        def boot(vm: str) -> None:
            lab.start(vm)
            lab.yield_cores([vm], True)

        # Their full share back once they answer: rebuilt while yielding, 30 municipalities' databases
        # took twice as long (620 s), and the offices' outages while they were rebuilt stayed as long.
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(boot, off))
                list(pool.map(lab.wait_alive, center))
        finally:
            lab.yield_cores(off, False)
        note(
            f"{len(off)} VMs started, yielding the cores to the backup site while they boot; "
            "every center VM answers on mgmt"
        )


@dataclass(frozen=True)
class Unreplicated:
    """What the fenced center primary held that the backup did not, found before failback replaced it."""

    codes: list[str]  # 住民票コード of rows missing at the backup or different there
    kept_in: str | None = None  # the file holding those rows (None: nothing to keep)
    unread: str = ""  # why the old cluster could not be read ("" when it was)
    records: int = 0  # the tenant's 情報提供等記録 missing at the backup or different there, kept too


_ROW_SUMS = "SELECT ref || ' ' || md5(r::text) FROM residents r"
_ROW_KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _row_sums(lab: Lab, vm: str) -> dict[str, str]:
    """Each resident row's digest on `vm`, by its key (a person who moved back in has two rows)."""
    sums = {}
    for line in lab.sql(vm, _ROW_SUMS, timeout=120).splitlines():
        key, _, digest = line.partition(" ")
        if not _ROW_KEY.fullmatch(key):  # a tenant's database is not trusted: keys go into SQL below
            raise LabError(f"{vm} holds a malformed row key; its rows are not read")
        sums[key] = digest
    return sums


# The 中間サーバー tenant's 情報提供等記録, by chain position: a record only the fenced primary
# held (or held otherwise) cannot join the chain the backup went on with, and is kept beside it.
_RECORD_SUMS = "SELECT position || ' ' || hash FROM chukan.records"


def _record_sums(lab: Lab, vm: str) -> dict[str, str]:
    sums = {}
    for line in lab.sql(vm, _RECORD_SUMS, database=CHUKAN_DATABASE, timeout=120).splitlines():
        key, _, digest = line.partition(" ")
        if not key.isascii() or not key.isdigit():  # keys go into SQL below
            raise LabError(f"{vm} holds a malformed record position; its records are not read")
        sums[key] = digest
    return sums


def _records_only_on(lab: Lab, center: str, backup: str) -> list[dict]:
    ours, theirs = _record_sums(lab, center), _record_sums(lab, backup)
    purged = tenant_base(lab, backup).start  # records the backup purged since are not missing there
    positions = sorted(int(k) for k, digest in ours.items() if int(k) >= purged and theirs.get(k) != digest)
    if not positions:
        return []
    listed = ",".join(str(p) for p in positions)
    rows = lab.sql(
        center,
        f"SELECT json_agg(r ORDER BY position) FROM chukan.records r WHERE position IN ({listed})",
        database=CHUKAN_DATABASE,
        timeout=120,
    )
    return list(json.loads(rows))


def _wait_readable(lab: Lab, vm: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            lab.sql(vm, "SELECT 1")
            return
        except LabError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def keep_rows_only_the_center_held(lab: Lab, pair: Pair, timeline: Timeline) -> Unreplicated:
    """Before the fenced primary's cluster is replaced: the rows the backup never received, kept.

    An asynchronous municipality may have acknowledged writes the backup never got; the fenced
    primary, started read-only, still holds them. They go to a 0600 file in the state directory
    (lgcloud.state.unreplicated) for the office to enter again; the cluster is also moved aside."""
    center, backup = pair.db, pair.replica
    with timeline.step(pair.id, "keep rows the backup never received") as note:
        try:
            lab.run(center, "sv -w 60 start postgresql >/dev/null", timeout=90)
            _wait_readable(lab, center)
            ours = _row_sums(lab, center)
        except LabError as exc:
            note(f"{center}'s cluster could not be read; it is moved aside whole ({exc})")
            return Unreplicated([], None, str(exc))
        theirs = _row_sums(lab, backup)
        keys = sorted(key for key, digest in ours.items() if theirs.get(key) != digest)
        try:
            records = _records_only_on(lab, center, backup)
        except LabError as exc:  # the residents are kept all the same; the cluster is moved aside whole
            note(f"{center}'s 情報提供等記録 could not be read ({exc}); they stay in the cluster moved aside")
            records = []
        if not keys and not records:
            note(f"none: {backup} holds every row and 情報提供等記録 {center} had")
            return Unreplicated([])
        rows = []
        if keys:
            listed = ",".join(f"'{key}'" for key in keys)
            rows = json.loads(
                lab.sql(
                    center,
                    f"SELECT json_agg(r ORDER BY resident_code, ref) FROM residents r WHERE ref IN ({listed})",
                    timeout=120,
                )
            )
        codes = [row["resident_code"] for row in rows]
        if not all(resident_code_is_valid(code) for code in codes):
            raise LabError(f"{center} holds a malformed 住民票コード; its rows are not read")
        path = keep_unreplicated(lab.stack, pair.id, center, rows, records)
        note(
            f"{len(codes)} row(s) and {len(records)} 情報提供等記録 only on {center}, kept in {path} (0600): "
            "the rows to be entered again, the records to be kept beside the chain"
        )
        return Unreplicated(codes, str(path), records=len(records))


def failback(lab: Lab, pair: Pair, timeline: Timeline) -> Unreplicated:
    """Rebuild the center as the replica, then switch the service back with no loss.

    The rows only the fenced center held are kept first, and returned."""
    center_db, backup_db = pair.db, pair.replica
    unreplicated = keep_rows_only_the_center_held(lab, pair, timeline)
    with timeline.step(pair.id, "rebuild the center database as a standby") as note:
        # Its port on the closed segment comes back now, so PostgreSQL listens there from its start;
        # the old primary is gone with the base backup and a standby cannot take writes.
        lab.plug(center_db, f"{pair.id}-center")
        _ensure_slot(lab, backup_db, pair.slot)
        _base_backup(lab, center_db, backup_db, pair.slot)
        _wait_streaming(lab, backup_db, pair.slot)
        if pair.replication == "sync":
            lab.sql(backup_db, f"ALTER SYSTEM SET synchronous_standby_names = '\"{pair.slot}\"'")
            lab.sql(backup_db, "SELECT pg_reload_conf()")
        note(
            f"fresh base backup over interconnect; streaming ({pair.replication}) from {backup_db}; "
            "back on its closed segment, read-only"
        )
    with timeline.step(pair.id, "stop writes at the backup") as note:
        lab.run("gateway-standby", f"lgcloud-service-address release {pair.service_address}", timeout=10)
        lab.run(backup_db, "sv -w 60 stop postgresql >/dev/null", timeout=90)
        note("service address released; backup primary shut down cleanly (all WAL sent)")
    with timeline.step(pair.id, "promote the center database") as note:
        final = _control_data(lab, backup_db)["Latest checkpoint location"]
        caught = lab.sql(center_db, f"SELECT pg_last_wal_replay_lsn() >= '{final}'::pg_lsn")
        if caught != "t":
            raise LabError(
                f"{center_db} has not replayed the backup's final checkpoint {final}; "
                "the backup stays the source of truth: start its postgresql and retry failback"
            )
        if lab.sql(center_db, "SELECT pg_promote(true, 30)") != "t":
            raise LabError(f"{center_db} did not finish promotion within 30 s")
        _ensure_slot(lab, center_db, pair.slot)
        note(f"{center_db} replayed up to {final} and is primary")
    record_failback(lab.stack, pair.id)
    with timeline.step(pair.id, "make the backup a standby again") as note:
        center_link = lab.topology.vm(center_db).addresses["interconnect"]
        _follow(lab, backup_db, center_link, pair.slot)
        try:
            _wait_streaming(lab, center_db, pair.slot, timeout=15)
            note(f"{backup_db} follows {center_db}'s new timeline ({pair.replication})")
        except LabError:
            _base_backup(lab, backup_db, center_db, pair.slot)
            _wait_streaming(lab, center_db, pair.slot)
            note(f"{backup_db} could not follow; rebuilt from a fresh base backup ({pair.replication})")
    with timeline.step(pair.id, "take service address at the center") as note:
        _wait_backend_up(lab, "gateway", pair)
        lab.run("gateway", f"lgcloud-service-address take {pair.service_address}", timeout=10)
        note(f"{pair.service_address} held by the center gateway again")
    verify(lab, pair, timeline, "primary")
    return unreplicated


def restart_app(lab: Lab, pair: Pair, timeline: Timeline) -> None:
    """An app VM died: its hypervisor starts it again on the same site (its disk is intact)."""
    with timeline.step(pair.id, "restart the app VM") as note:
        lab.start(pair.app)
        lab.wait_alive(pair.app)
        note(f"{pair.app} started again")
    with timeline.step(pair.id, "wait for the gateway to see the app") as note:
        _wait_backend_up(lab, "gateway", pair)
        note("HAProxy's health check passes")
    verify(lab, pair, timeline, "primary")


def wait_promoted(lab: Lab, vm: str, timeout: float) -> None:
    """Until the cluster on `vm`, started after a restore, has replayed to its target and promoted.
    While it starts it refuses connections ("the database system is starting up"): not a failure."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if lab.sql(vm, "SELECT pg_is_in_recovery()", database="postgres") == "f":
                return
        except LabError:
            pass
        if time.monotonic() > deadline:
            raise LabError(f"{vm} has not finished replaying WAL {timeout:.0f} s after its restore")
        time.sleep(0.2)


def restore_before(lab: Lab, pair: Pair, timeline: Timeline, target: RestoreTarget, backup: str) -> None:
    """A statement damaged the municipality's data and replicated: bring its database back, in
    place, to `target` (the transaction before the damage, or a moment), starting from the
    repository's backup labelled `backup`.

    Writes stop first (the service address released), so nothing is written to data about to be
    replaced. The damaged clusters are moved aside, never deleted: the primary's once it is
    stopped, the replica's once the restored primary is verified on a newer timeline. The audit
    trail (アクセス記録, sign-ins) is not rolled back with the data: what the damaged primary
    recorded is appended to the restored one. A failure on the way says how to serve the damaged
    cluster again."""
    with timeline.step(pair.id, "stop writes") as note:
        lab.run("gateway", f"lgcloud-service-address release {pair.service_address}", timeout=10)
        # gunicorn answers the requests in flight, then stops: none commits after the audit trail
        # is copied below.
        lab.run(pair.app, "sv -w 45 stop jumin zei atena-link >/dev/null", timeout=60)
        # The 中間サーバー writes this tenant's 情報提供等記録 from outside: its role is shut out (the
        # restored cluster has it as it was before the damage, able to log in again).
        lab.sql(pair.db, f"ALTER ROLE {CHUKAN_ROLE} NOLOGIN", database="postgres")
        lab.sql(
            pair.db,
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{CHUKAN_ROLE}'",
            database="postgres",
        )
        note(
            f"{pair.service_address} released, {pair.app} stopped, the 中間サーバー shut out: "
            "no service until the data is good"
        )
    stamp = time.strftime("%Y%m%dT%H%M%S")
    try:
        with timeline.step(pair.id, "archive the WAL up to the damage") as note:
            # The damage is in the primary's current WAL segment, which only a switch sends to the
            # repository; without it, recovery cannot reach the moment before the damage.
            note(f"{archive_current_wal(lab, pair.db)} archived")
        with timeline.step(pair.id, "keep the audit trail") as note:
            trail = _audit_trail(lab, pair.db)
            note(", ".join(f"{audit.table}: {rows.count(chr(10))} rows" for audit, rows in trail.items()))
        with timeline.step(pair.id, "restore the primary to before the damage") as note:
            lab.run(pair.db, "sv -w 60 stop postgresql >/dev/null", timeout=90)
            _move_aside(lab, pair.db, stamp)
            command = ["pgbackrest", f"--stanza={pair.id}", *target.pgbackrest_args(backup), "restore"]
            lab.run(pair.db, "runuser -u postgres -- " + shlex.join(command), timeout=1800)
            lab.run(pair.db, "sv -w 60 start postgresql >/dev/null", timeout=90)
            wait_promoted(lab, pair.db, 600)
            # pgBackRest's recovery target is in postgresql.auto.conf, which a base backup copies:
            # a replica made from this cluster would stop at it and promote itself.
            for setting in (
                "recovery_target_xid",
                "recovery_target_time",
                "recovery_target_inclusive",
                "recovery_target_action",
                "recovery_target_timeline",
            ):
                lab.sql(pair.db, f"ALTER SYSTEM RESET {setting}", database="postgres")
            lab.sql(pair.db, "SELECT pg_reload_conf()", database="postgres")
            appended = _append_audit_trail(lab, pair.db, trail)
            timeline_id = int(lab.sql(pair.db, "SELECT pg_walfile_name(pg_current_wal_lsn())")[:8], 16)
            note(
                f"from backup {backup} to {target.describe()}, promoted (timeline {timeline_id}); "
                f"{appended} audit rows made since appended; the damaged cluster kept as {PG_DATA}.replaced-{stamp}"
            )
    except LabError as exc:
        raise LabError(
            f"{exc}; {pair.id} is not served ({pair.service_address} released). To serve the damaged data "
            f"again: on {pair.db} `sv stop postgresql`, move {PG_DATA}.replaced-{stamp} back to {PG_DATA} if it "
            f"was moved, `sv start postgresql`; on {pair.app} `sv start jumin zei atena-link`; then on gateway "
            f"`lgcloud-service-address take {pair.service_address}`"
        ) from None
    with timeline.step(pair.id, "rebuild the replica from the restored primary") as note:
        _ensure_slot(lab, pair.db, pair.slot)
        _base_backup(lab, pair.replica, pair.db, pair.slot)
        _wait_streaming(lab, pair.db, pair.slot)
        note(f"{pair.replica} streams ({pair.replication}); its damaged cluster kept aside")
    with timeline.step(pair.id, "take service address at the center") as note:
        lab.run(pair.app, "sv -w 45 start jumin zei atena-link >/dev/null", timeout=60)
        _wait_backend_up(lab, "gateway", pair)
        lab.run("gateway", f"lgcloud-service-address take {pair.service_address}", timeout=10)
        note(f"{pair.app} started, {pair.service_address} held by the center gateway again")
    verify(lab, pair, timeline, "primary")


@dataclass(frozen=True)
class AuditTable:
    """An append-only table an in-place restore keeps whole (roles/postgresql/files/ensure_primary.py)."""

    database: str
    table: str
    key: str  # the column a row is known by
    sequence: bool  # whether `key` is drawn from a sequence, to be moved past the rows appended


AUDIT_TABLES = (
    AuditTable("jumin", "audit.access_records", "id", True),
    AuditTable("jumin", "audit.sign_ins", "id", True),
    # A hash chain: the rows appended after the restore point follow on from it unchanged.
    AuditTable(CHUKAN_DATABASE, "chukan.records", "position", False),
)


def _audit_trail(lab: Lab, vm: str) -> dict[AuditTable, str]:
    """Every row of the audit tables, in COPY's text form (read as postgres: the app cannot)."""
    trail = {}
    for audit in AUDIT_TABLES:
        copy = shlex.quote(f"COPY {audit.table} TO STDOUT")
        trail[audit] = lab.run(vm, f"chpst -u postgres psql -XAq -d {audit.database} -c {copy}", timeout=300)
    return trail


def _append_audit_trail(lab: Lab, vm: str, trail: dict[AuditTable, str]) -> int:
    """Append the rows of `trail` the restored database lacks (by key: commit order is not id
    order), move each sequence past them; how many rows were appended."""
    appended = 0
    for database in dict.fromkeys(audit.database for audit in trail):
        script = "SET synchronous_commit = local;\n"  # the replica is rebuilt after this
        for audit, rows in trail.items():
            if audit.database != database:
                continue
            table, key = audit.table, audit.key
            script += (
                f"CREATE TEMP TABLE kept (LIKE {table});\nCOPY kept FROM STDIN;\n{rows}\\.\n"
                f"WITH added AS (INSERT INTO {table} SELECT * FROM kept k"
                f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{key} = k.{key}) ORDER BY {key} RETURNING 1)"
                " SELECT 'appended ' || count(*) FROM added;\n"
            )
            if audit.sequence:
                script += (
                    f"SELECT 'sequence ' || setval(pg_get_serial_sequence('{table}', '{key}'),"
                    f" greatest((SELECT max({key}) FROM {table}), 1));\n"
                )
            script += "DROP TABLE kept;\n"
        command = f"chpst -u postgres psql -XAtq -v ON_ERROR_STOP=1 -d {database} -f -"
        out = lab.run(vm, command, stdin=script, timeout=300)
        appended += sum(int(line.split()[1]) for line in out.splitlines() if line.startswith("appended "))
    return appended


def archived(segment: str) -> str:
    """SQL: whether the WAL segment is archived. Not by `last_archived_wal`: a backup's history file
    (``…05.00000028.backup``) may be archived after a later segment and sort before it."""
    if not (len(segment) == 24 and all(c in "0123456789ABCDEF" for c in segment)):
        raise LabError(f"not a WAL segment name: {segment!r}")
    return f"SELECT NOT EXISTS (SELECT 1 FROM pg_ls_archive_statusdir() WHERE name = '{segment}.ready')"


def archive_current_wal(lab: Lab, vm: str, timeout: float = 60) -> str:
    """Switch the primary on `vm` to a new WAL segment and wait until the old one is archived; its name."""
    segment = lab.sql(vm, "SELECT pg_walfile_name(pg_switch_wal())", database="postgres")
    deadline = time.monotonic() + timeout
    while lab.sql(vm, archived(segment), database="postgres") != "t":
        if time.monotonic() > deadline:
            raise LabError(
                f"{vm} has not archived {segment} within {timeout:.0f} s; see WalArchiveFailing in docs/runbooks.md"
            )
        time.sleep(0.1)
    return segment
