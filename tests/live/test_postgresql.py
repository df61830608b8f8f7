"""Each municipality's database: primary at the center, streaming replica at the backup site.

PostgreSQL runs under runit on the closed segment and interconnect only, the replica streams
over interconnect (synchronously where the municipality asks for RPO 0), a row written on the
primary shows up on the replica within a second, and the replica refuses writes.
"""

from __future__ import annotations

import json
import socket
import time
import uuid

import pytest

from lgcloud.model.naming import replica_slot
from lgcloud.ops.lab import Lab
from lgcloud.state.secrets import stack_secrets

from .conftest import STACK, configure, hostvars, run_configure

pytestmark = pytest.mark.live

PORT = 5432
CHECK_DB = "lgcloud_check"


def psql(host, sql: str, database: str = "postgres"):
    """Run one statement as the OS user postgres over the Unix socket (peer auth)."""
    return host.run("cd / && runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s", database, sql)


def query(host, sql: str, database: str = "postgres") -> str:
    result = psql(host, sql, database)
    assert result.rc == 0, f"{sql}: {result.stderr}"
    return result.stdout.strip()


@pytest.mark.hosts("role_db", "role_db_replica")
def test_postgresql_runs_under_runit(configured, vm, name):
    host = vm(name)
    status = host.check_output("sv status postgresql")
    assert status.startswith("run:"), f"{name}: {status}"
    postmaster = host.check_output("cat /etc/sv/postgresql/supervise/pid")
    assert host.process.get(pid=int(postmaster)).user == "postgres", "the postmaster is not runsv's child as postgres"
    assert host.run("pg_isready -q -h /var/run/postgresql").rc == 0


@pytest.mark.hosts("role_db", "role_db_replica")
def test_listens_on_closed_segment_and_interconnect_only(configured, vm, lab, name):
    municipality = hostvars(name)["lgcloud_municipality"]
    host = vm(name)
    addresses = lab.vm(name).addresses
    closed = next(a for segment, a in addresses.items() if segment.startswith(f"{municipality}-"))
    assert host.socket(f"tcp://{closed}:{PORT}").is_listening, f"not on the closed segment {closed}"
    assert host.socket(f"tcp://{addresses['interconnect']}:{PORT}").is_listening, "not on interconnect"
    assert host.socket(f"tcp://127.0.0.1:{PORT}").is_listening, "not on localhost"
    assert not host.socket(f"tcp://{addresses['mgmt']}:{PORT}").is_listening, "listens on mgmt"
    assert not host.socket(f"tcp://0.0.0.0:{PORT}").is_listening, "listens on every address"
    # And from the controller, over mgmt, nothing answers.
    with pytest.raises(OSError):
        socket.create_connection((addresses["mgmt"], PORT), timeout=2).close()


@pytest.mark.municipalities
def test_replica_streams_over_interconnect(configured, vm, lab, m):
    rows = query(
        vm(f"{m.id}-db"), "SELECT application_name, client_addr, state, sync_state FROM pg_stat_replication"
    ).splitlines()
    replica = lab.vm(f"{m.id}-db-replica").addresses["interconnect"]
    expected = "sync" if m.replication == "sync" else "async"
    assert rows == [f"{replica_slot(m.id)}|{replica}|streaming|{expected}"], rows
    active = query(
        vm(f"{m.id}-db"), f"SELECT active FROM pg_replication_slots WHERE slot_name = '{replica_slot(m.id)}'"
    )
    assert active == "t", f"slot {replica_slot(m.id)} is not in use"
    assert query(vm(f"{m.id}-db-replica"), "SELECT pg_is_in_recovery()") == "t"


@pytest.mark.municipalities
def test_the_replica_streams_with_the_labs_wal_timeout_not_its_clones(configured, vm, m):
    """The clone's 60 s WAL timeout stays with pg_basebackup: a replica that the primary waited a
    minute for would hold a synchronous primary's commits that long after a site loss."""
    conninfo = query(vm(f"{m.id}-db-replica"), "SELECT conninfo FROM pg_stat_wal_receiver")
    assert "host=" in conninfo, conninfo
    assert "wal_sender_timeout" not in conninfo, conninfo
    assert query(vm(f"{m.id}-db-replica"), "SHOW wal_receiver_timeout") == "5s"


@pytest.mark.hosts("role_db")
def test_a_lost_standby_cannot_fill_the_primarys_disk(configured, vm, name):
    assert query(vm(name), "SHOW max_slot_wal_keep_size") == "1GB"
    assert query(vm(name), "SELECT wal_status FROM pg_replication_slots") in ("reserved", "extended")


@pytest.mark.municipalities
def test_a_row_written_on_the_primary_is_read_on_the_replica(configured, vm, m):
    primary, replica = vm(f"{m.id}-db"), vm(f"{m.id}-db-replica")
    if not query(primary, f"SELECT 1 FROM pg_database WHERE datname = '{CHECK_DB}'"):
        query(primary, f"CREATE DATABASE {CHECK_DB}")
    query(
        primary, "CREATE TABLE IF NOT EXISTS rows (token text PRIMARY KEY, written timestamptz DEFAULT now())", CHECK_DB
    )
    token = uuid.uuid4().hex
    query(primary, f"INSERT INTO rows (token) VALUES ('{token}')", CHECK_DB)
    written = time.monotonic()
    seen = None
    while time.monotonic() - written < 1.0:
        result = psql(replica, f"SELECT token FROM rows WHERE token = '{token}'", CHECK_DB)
        if result.rc == 0 and result.stdout.strip() == token:
            seen = time.monotonic() - written
            break
        time.sleep(0.05)
    query(primary, f"DELETE FROM rows WHERE token = '{token}'", CHECK_DB)
    assert seen is not None, f"{m.id}: the row did not reach the replica within 1 s"


@pytest.mark.municipalities
def test_the_replica_refuses_writes(configured, vm, m):
    result = psql(vm(f"{m.id}-db-replica"), "CREATE TABLE refused (id int)")
    assert result.rc != 0, "the replica accepted a write"
    assert "read-only transaction" in result.stderr, result.stderr


@pytest.mark.municipalities
def test_only_the_peer_may_replicate(configured, vm, lab, m):
    """From the app VM on the closed segment, neither replication nor the superuser is admitted."""
    db = lab.vm(f"{m.id}-db").addresses[f"{m.id}-center"]
    app = vm(f"{m.id}-app")
    for conninfo in (
        f"host={db} user=replicator dbname=replication replication=true",
        f"host={db} user=postgres dbname=postgres",
    ):
        result = app.run("PGPASSWORD=wrong PGCONNECT_TIMEOUT=3 psql -w %s -c 'SELECT 1'", conninfo)
        assert result.rc != 0, f"{conninfo}: admitted from {m.id}-app"
        assert "no pg_hba.conf entry" in result.stderr, result.stderr


HALF_CLONED = "b-town"  # synchronous: its primary holds every commit while the replica is away
DATA = "/var/lib/postgresql/15/main"


def test_a_clone_that_stopped_part_way_is_cloned_again_with_every_row(configured, vm, lab, dev):
    """The replica's clone killed half-way (as a lost VM or an OOM kill would) leaves part of the
    primary's files and no standby.signal; the next `lgcloud configure` moves it aside, clones
    again, and the replica streams with every row of its primary. Nothing is deleted."""
    primary, replica = vm(f"{HALF_CLONED}-db"), vm(f"{HALF_CLONED}-db-replica")
    kept = f"{DATA}.before-half-clone-test"
    clone = (
        "chpst -u postgres /usr/lib/postgresql/15/bin/pg_basebackup "
        f"-h {lab.vm(f'{HALF_CLONED}-db').addresses['interconnect']} -U replicator -D {DATA} -X stream -R "
        "--max-rate=512k -c fast -w"
    )
    replica.check_output("sv -w 60 stop postgresql")
    replica.check_output(f"mv {DATA} {kept} && install -d -o postgres -g postgres -m 0700 {DATA}")
    try:
        # Killed with no chance to clean up (pg_basebackup removes what it wrote when it exits on
        # an error), its WAL streamer too. The password on stdin, never on a command line.
        with Lab(dev) as ops:
            ops.run(
                f"{HALF_CLONED}-db-replica",
                f"read -r PGPASSWORD && export PGPASSWORD && cd / && {{ {clone} >/dev/null 2>&1 & }}; "
                "sleep 4; pkill -9 -x pg_basebackup; sleep 0.5",
                stdin=stack_secrets(STACK).postgresql_replication_password + "\n",
            )
        left = replica.check_output(f"ls {DATA}").split()
        report = configure()  # whatever the kill left: the lab is mended before anything is asserted
        assert left and "standby.signal" not in left, f"not a clone stopped part-way: {left}"
        assert not report["hosts"][f"{HALF_CLONED}-db-replica"]["failed"], report["hosts"][f"{HALF_CLONED}-db-replica"]
        streams = query(primary, "SELECT state FROM pg_stat_replication")
        assert streams == "streaming", streams
        for table in ("residents", "audit.access_records"):
            on_primary = query(primary, f"SELECT count(*) FROM {table}", "jumin")
            assert query(replica, f"SELECT count(*) FROM {table}", "jumin") == on_primary, table
        aside = replica.check_output(f"ls -d {DATA}.replaced-*").split()
        assert aside, "the half-way clone was not kept aside"
    finally:
        replica.run(f"rm -rf {kept}")  # the test's own copy of a cluster the replica no longer follows


def test_a_synchronous_municipalitys_systems_wait_for_a_replica_that_failed(configured, vm, dev):
    """A replica that fails its play (here: promoted by hand, so configure refuses to clone over
    it) keeps its synchronous municipality's business systems from being started in that run,
    each failing with the municipality's and the replica's names; moved aside, it is cloned again."""
    replica = vm(f"{HALF_CLONED}-db-replica")
    replica.check_output(f"cd / && chpst -u postgres /usr/lib/postgresql/15/bin/pg_ctl promote -w -D {DATA}")
    try:
        result = run_configure("--json", "--full", timeout=900)
        hosts = json.loads(result.stdout)["hosts"]
        assert result.returncode != 0
        assert hosts[f"{HALF_CLONED}-db-replica"]["failed"], hosts[f"{HALF_CLONED}-db-replica"]
        for app in (f"{HALF_CLONED}-app", f"{HALF_CLONED}-app-standby"):
            said = " ".join(hosts[app]["failures"])
            assert f"{HALF_CLONED} replicates synchronously, and {HALF_CLONED}-db-replica failed" in said, said
        assert not any(hosts["a-city-app"]["failures"]), "another municipality's systems were held"
    finally:
        # The promoted copy holds nothing its primary lacks: moved aside (not deleted), cloned anew.
        replica.check_output(f"sv -w 60 stop postgresql && mv {DATA} {DATA}.replaced-promoted-by-test")
        configure()
        replica.run(f"rm -rf {DATA}.replaced-promoted-by-test")
    assert query(vm(f"{HALF_CLONED}-db"), "SELECT state FROM pg_stat_replication") == "streaming"
