"""Disaster-recovery drills on the dev lab: site-loss then failback, db-loss then failback,
app-loss, data-corruption, link-partition.

Each drill runs through the CLI as an operator would and is judged on its own report; the lab's
databases are then checked directly. The drills run after every other live test (see conftest)
and leave the lab normal again, which the last checks of each pair prove.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lgcloud.model.naming import segment_resource, vm_resource
from lgcloud.ops.access import wait_for_ssh
from lgcloud.ops.drill.runbook import Timeline, center_gateway_record, failover
from lgcloud.ops.drill.site import SITE
from lgcloud.ops.lab import Lab
from lgcloud.state.directory import state_dir
from lgcloud.state.failover import served_from_backup

from .conftest import STACK, run_configure
from .offices import register
from .policy import against_policy, observe

pytestmark = [pytest.mark.live, pytest.mark.drill]

CI_RTO_BOUND = 30.0  # seconds: a correctness bound; the benchmark measures the real figure


def drill(*args: str, expect: int | None = 0) -> tuple[int, dict | None, str]:
    result = subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", "drill", *args, "--stack", STACK, "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if expect is not None:
        assert result.returncode == expect, (
            f"drill {args} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result.returncode, report, result.stderr


def assert_recovered(report: dict, bound: float = CI_RTO_BOUND) -> None:
    problems = {m["id"]: m["problems"] for m in report["municipalities"] if m["problems"]}
    assert report["passed"], (problems, report["errors"])
    for m in report["municipalities"]:
        assert m["acknowledged_writes"] > 5, m  # the clerk really wrote before and after
        assert m["rto_seconds"] is not None and m["rto_seconds"] <= bound, m
        assert m["integrity"]["ok"], m["integrity"]
        if m["replication"] == "sync":
            assert m["lost_writes"] == 0 and m["rpo_seconds"] == 0, m


_CODES = "chpst -u postgres psql -XAtq -d jumin -c 'SELECT resident_code FROM residents'"


def assert_normal(vm, municipalities) -> None:
    """Center primaries, backup replicas streaming, service addresses at the center gateway."""
    assert served_from_backup(STACK) == {}
    for m in municipalities:
        in_recovery = "chpst -u postgres psql -XAtq -c 'SELECT pg_is_in_recovery()'"
        assert vm(f"{m.id}-db").check_output(in_recovery) == "f"
        assert vm(f"{m.id}-db-replica").check_output(in_recovery) == "t"
        state = vm(f"{m.id}-db").check_output(
            'chpst -u postgres psql -XAtq -c "SELECT sync_state FROM pg_stat_replication"'
        )
        assert state == m.replication
    held = vm("gateway").check_output("lgcloud-service-address list").split()
    assert len(held) == len(municipalities)
    assert vm("gateway-standby").check_output("lgcloud-service-address list") == ""


@pytest.fixture(scope="module")
def site_loss(configured):
    # Judged by the tests, not here: a missed target must not keep the failback below from running
    # and returning the lab to normal for the drills after it.
    code, report, err = drill("site-loss", expect=None)
    assert report is not None, f"site-loss printed no report (exit {code}):\n{err[-3000:]}"
    return report


def test_site_loss_loses_no_acknowledged_write_and_recovers(site_loss):
    assert_recovered(site_loss)
    assert {m["id"] for m in site_loss["municipalities"]} == {"a-city", "b-town", "c-village"}


def test_the_linkage_comes_back_on_the_backup_site_with_no_provided_record_lost(site_loss):
    """Ｂ町's 税 asked Ａ市 for a moved person's income every second through the loss of the center:
    answered again from the backup site, every answered query on record at both ends."""
    linkage = site_loss["linkage"]
    assert (linkage["requester"], linkage["provider"]) == ("b-town", "a-city"), linkage
    assert linkage["passed"] and linkage["lost_request_ids"] == [], linkage
    assert linkage["rto_seconds"] is not None and linkage["rto_seconds"] <= linkage["rto_target_seconds"], linkage
    assert linkage["answered"] >= 5, linkage  # before the injection and after the recovery


def test_site_loss_runs_one_site_level_runbook(site_loss):
    """Detected once for the site, fenced at once, each municipality promoted and verified, the
    three addresses moved by one command per gateway beside the promotions, after the fence."""
    done = [s for s in site_loss["timeline"] if not s["detail"].startswith("FAILED")]
    site = [s for s in done if s["municipality"] == SITE]
    assert [s["name"] for s in site] == [
        "detected: center lost",
        "fence the center",
        "take the service addresses at the backup",
        "seal the fenced primaries",
        "strike the addresses from the lost gateway",
    ]
    for m in ("a-city", "b-town", "c-village"):
        assert [s["name"] for s in done if s["municipality"] == m] == [
            "promote the backup replica",
            "verify from the office",
        ]
    [take] = [s for s in site if s["name"] == "take the service addresses at the backup"]
    assert {"10.100.1.254", "10.100.1.253", "10.100.2.254"} <= set(take["detail"].split()), take
    # Nothing is served from the backup before the center is fenced.
    [fence] = [s for s in site if s["name"] == "fence the center"]
    promotions = [s for s in done if s["name"] == "promote the backup replica"]
    assert all(s["at"] >= fence["at"] + fence["seconds"] - 0.01 for s in (*promotions, take))


def test_after_site_loss_the_backup_serves_and_configure_refuses(site_loss, vm, dev):
    assert set(served_from_backup(STACK)) == {"a-city", "b-town", "c-village"}
    assert vm("a-city-db-replica").check_output("chpst -u postgres psql -XAtq -c 'SELECT pg_is_in_recovery()'") == "f"
    assert "10.100.1.254" in vm("gateway-standby").check_output("lgcloud-service-address list").split()
    # The lost gateway, powered on, would take back what its record lists: the moved addresses are struck.
    with Lab(dev) as ops:
        assert not {p.service_address for p in ops.pairs.values()} & set(center_gateway_record(ops))
    result = run_configure(timeout=60)
    assert result.returncode == 2 and "lgcloud drill failback" in result.stderr


def test_a_promoted_replica_is_never_cloned_over_even_if_the_failover_record_is_lost(site_loss, vm):
    """The CLI refuses configure while failed over; without the record, the role itself refuses."""
    replica = vm("a-city-db-replica")
    moved_aside = "ls -d /var/lib/postgresql/15/main.replaced-* 2>/dev/null | wc -l"
    kept_before = replica.check_output(moved_aside)
    record = state_dir(STACK) / "failover.json"
    aside = record.with_name("failover.json.test-aside")
    record.rename(aside)
    try:
        result = run_configure("--limit", "a-city-db-replica", timeout=600)
    finally:
        aside.rename(record)
    assert result.returncode == 1 and "a primary holding data of its own" in result.stderr, result.stderr
    assert replica.check_output("cd / && chpst -u postgres psql -XAtq -c 'SELECT pg_is_in_recovery()'") == "f"
    assert replica.check_output(moved_aside) == kept_before, "the promoted replica's cluster was moved"


def test_failback_after_site_loss_switches_back_without_loss(site_loss, vm, dev):
    _, report, _ = drill("failback")
    assert_recovered(report)
    assert_normal(vm, dev.municipalities)
    for m in dev.municipalities:  # the fenced primaries' clusters were moved aside, not deleted
        kept = vm(f"{m.id}-db").run("ls -d /var/lib/postgresql/15/main.replaced-*")
        assert kept.rc == 0 and kept.stdout.strip(), f"{m.id}-db: no moved-aside cluster: {kept.stderr}"
    # The center's VMs booted yielding the cores to the backup site; all have their share back.
    with Lab(dev) as ops:
        center = [v.name for v in ops.topology.vms if v.site == "center"]
        assert [name for name in center if ops.yielding(name)] == []


@pytest.fixture(scope="module")
def db_loss(configured):
    if served_from_backup(STACK):
        pytest.fail("the lab is not normal before db-loss: an earlier failback did not finish")
    code, report, err = drill("db-loss", "--municipality", "012025", expect=None)
    assert report is not None, f"db-loss printed no report (exit {code}):\n{err[-3000:]}"
    return report


def test_db_loss_fails_over_only_that_municipality(db_loss, vm):
    assert_recovered(db_loss)
    assert [m["id"] for m in db_loss["municipalities"]] == ["a-city"]
    assert set(served_from_backup(STACK)) == {"a-city"}
    # Ｂ町 was not touched: its center database is still primary.
    assert vm("b-town-db").check_output("chpst -u postgres psql -XAtq -c 'SELECT pg_is_in_recovery()'") == "f"


def test_fenced_primary_cannot_take_writes_when_it_comes_back(db_loss, vm, lab):
    """Powered on by someone, the old primary does not boot while its ports are cut; with its
    interconnect port repaired it boots read-only, still cut from its app's segment."""
    container = vm_resource(STACK, "a-city-db")

    def docker(*args: str) -> str:
        return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout

    docker("start", container)
    assert docker("wait", container).strip() != "0"  # vm-init stops it: its firewall cannot be placed
    docker(
        "network",
        "connect",
        "--ip",
        lab.vm("a-city-db").addresses["interconnect"],
        segment_resource(STACK, "interconnect"),
        container,
    )
    docker("start", container)
    assert wait_for_ssh({"a-city-db": lab.vm("a-city-db").addresses["mgmt"]}) == []
    old = vm("a-city-db")
    old.run("sv -w 30 start postgresql")
    assert old.file("/var/lib/postgresql/15/main/standby.signal").exists
    assert old.check_output("chpst -u postgres psql -XAtq -c 'SELECT pg_is_in_recovery()'") == "t"
    closed = str(lab.segment("a-city-center").cidr.network_address)[:-1]
    assert closed not in old.check_output("ip -o -4 addr show")


def test_failback_after_db_loss(db_loss, vm, dev):
    _, report, _ = drill("failback", "--municipality", "a-city")
    assert_recovered(report)
    assert_normal(vm, dev.municipalities)


def test_drill_refuses_bad_input_and_changes_nothing(configured):
    code, _, err = drill("db-loss", "--municipality", "999999", expect=2)
    assert "no municipality '999999'" in err
    code, _, err = drill("failback", expect=2)
    assert "nothing to fail back" in err
    code, _, err = drill("site-loss", "--municipality", "a-city", expect=2)
    assert "drop --municipality" in err
    assert served_from_backup(STACK) == {}


def test_app_loss_restarts_the_app_in_place(configured, vm, dev):
    _, report, _ = drill("app-loss", "--municipality", "b-town")
    assert_recovered(report)
    steps = [s["name"] for s in report["timeline"] if s["municipality"] == "b-town"]
    assert "restart the app VM" in steps and "promote the backup replica" not in steps
    assert_normal(vm, dev.municipalities)


def test_data_corruption_is_undone_from_the_backups_with_nothing_from_before_lost(configured, vm, dev):
    """A DELETE without its WHERE on Ｂ町's primary; restored in place to the transaction before it."""
    # A restore replays every WAL segment since the newest backup: on a lab written to for hours
    # since its configure-time backup, that replay alone outlasts the RTO target. The schedule
    # (lgcloud:backup.interval) bounds that age in a real deployment; here a backup taken now does.
    taken = subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", "backup", "run", "--municipality", "b-town", "--stack", STACK],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    _, report, err = drill("data-corruption", "--municipality", "b-town")
    assert_recovered(report, bound=120.0)  # a restore, not a failover: the benchmark gives the figure
    [m] = report["municipalities"]
    assert m["lost_writes"] == 0 and m["rpo_seconds"] == 0, m  # every write from before the damage is back
    assert m["rolled_back_codes"] is not None, m
    for code in m["rolled_back_codes"]:
        assert len(code) == 11 and code.isdigit(), code
    # The data went back; the audit trail did not: the registrations rolled back are still recorded.
    if m["rolled_back_codes"]:
        listed = ", ".join(f"'{code}'" for code in m["rolled_back_codes"])
        recorded = vm("b-town-db").check_output(
            "chpst -u postgres psql -XAtq -d jumin -c "
            f"\"SELECT DISTINCT resident_code FROM audit.access_records WHERE action = 'register' "
            f'AND resident_code IN ({listed})"'
        )
        assert sorted(recorded.split()) == sorted(m["rolled_back_codes"]), "access records rolled back with the data"
    steps = [s["name"] for s in report["timeline"] if s["municipality"] == "b-town"]
    assert steps[:2] == ["injected: DELETE FROM residents (no WHERE)", "stop writes"], steps
    assert (
        "restore the primary to before the damage" in steps and "rebuild the replica from the restored primary" in steps
    )
    # The damaged clusters are kept aside on both VMs, never deleted.
    for side in ("db", "db-replica"):
        kept = vm(f"b-town-{side}").check_output("ls -1d /var/lib/postgresql/15/main.replaced-* | wc -l")
        assert int(kept) >= 1, f"b-town-{side}: the damaged cluster was not kept"
    assert_normal(vm, dev.municipalities)


def test_link_partition_stalls_sync_writes_loses_nothing_and_keeps_one_primary(configured, vm, dev):
    _, report, _ = drill("link-partition")
    assert_recovered(report)
    for m in report["municipalities"]:
        assert m["primaries_seen"] == [1]  # never two primaries, never none
        assert m["integrity"]["after_primary"] == m["integrity"]["after_replica"]  # the replica caught up
    stalled = {m["id"]: m["rto_seconds"] for m in report["municipalities"]}
    assert stalled["a-city"] >= 10.0 > stalled["c-village"]  # sync waits out the cut; async goes on
    assert_normal(vm, dev.municipalities)


def test_failback_keeps_the_rows_an_async_backup_never_received(configured, vm, dev):
    """Ｃ村 replicates async: a write its center acknowledged may never reach the backup. Here the
    backup stops receiving, two residents are registered, and the center is lost; failback finds
    the two on the fenced primary and keeps them, 0600, for the office to enter again."""
    municipality = "c-village"
    ops = Lab(dev)
    try:
        p = ops.pair(municipality)
        ops.sql(p.replica, "ALTER SYSTEM SET primary_conninfo = ''")  # the backup hears no more
        ops.sql(p.replica, "SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while ops.sql(p.db, f"SELECT count(*) FROM pg_stat_replication WHERE application_name = '{p.slot}'") != "0":
            assert time.monotonic() < deadline, "the replica kept streaming"
            time.sleep(0.3)
        codes = sorted(register(vm, municipality, f"非同期 {n}", "ヒドウキ") for n in range(2))
        # And a 情報提供等記録 of Ｃ村's tenant, on the center only: a query about nobody linked.
        address = ops.topology.vm("chukan").addresses[f"{municipality}-center"]
        query = {
            "atena_number": "9999999999",
            "office": "個人住民税の賦課",
            "provider": "012025",
            "provider_kind": "former-municipality",
            "items": ["前年の所得"],
        }
        asked = ops.run(
            p.app,
            f"curl -sS -o /dev/null -w '%{{http_code}}' -H 'Content-Type: application/json' --data-binary @- "
            f"http://{address}:8600/api/query",
            stdin=json.dumps(query, ensure_ascii=False),
        )
        assert asked == "409", asked  # refused: no 符号 yet; recorded all the same
        failover(ops, p, Timeline(), "db-loss")
    finally:
        ops.close()
    assert not set(codes) & set(vm(f"{municipality}-db-replica").check_output(_CODES).split())

    _, report, err = drill("failback", "--municipality", municipality)
    [m] = report["municipalities"]
    assert m["unreplicated_codes"] == codes, m
    kept = Path(m["unreplicated_file"])
    assert kept.stat().st_mode & 0o777 == 0o600
    document = json.loads(kept.read_text())
    assert sorted(row["resident_code"] for row in document["rows"]) == codes
    assert m["unreplicated_records"] >= 1 and len(document["records"]) == m["unreplicated_records"], m
    assert any(json.loads(r["record"])["atena_number"] == "9999999999" for r in document["records"]), document
    assert kept.name in err and codes[0] not in err  # the file is named; personal data stays in it
    assert_normal(vm, dev.municipalities)


def test_the_firewall_followed_every_port_the_drills_plugged_back(dev):
    """Drills cut database ports and plug them back, some into running VMs, which cannot place
    their firewall themselves: every segment of each database's policy has its DROP rule on the
    interface that holds it, read through the hypervisor."""
    with Lab(dev) as ops:
        for m in dev.municipalities:
            for name in (f"{m.id}-db", f"{m.id}-db-replica"):
                container = ops.container(name)
                env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
                addresses = container.exec_run(["ip", "-o", "-4", "addr", "show"]).output.decode().splitlines()
                rules = container.exec_run(["iptables", "-w", "-S", "LGCLOUD-INGRESS"]).output.decode()
                for rule in filter(None, env["LGCLOUD_INGRESS"].split(";")):
                    network = ipaddress.ip_network(rule.partition("=")[0])
                    [iface] = [f[1] for f in map(str.split, addresses) if ipaddress.ip_interface(f[3]).ip in network]
                    assert f"-A LGCLOUD-INGRESS -i {iface} -j DROP" in rules, f"{name}: {iface} ({network}) is open"


def test_the_isolation_matrix_holds_after_the_drills(vm, lab):
    """The drills powered VMs off and on and re-plugged their ports: the policy still holds."""
    observed = observe(vm, lab)
    wrong = {name: found for name in observed if (found := against_policy(lab, observed, name))}
    assert not wrong, f"against policy after the drills: {wrong}"
