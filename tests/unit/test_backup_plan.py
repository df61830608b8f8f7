"""What the plan and the inventory say about backups: the repository VM, the restore VMs, who may
reach whom on interconnect, and how a restore target is read and checked."""

from __future__ import annotations

import datetime

import pytest

from lgcloud.errors import EXIT_BAD_INPUT, OperatorError
from lgcloud.model.topology import plan
from lgcloud.ops.backup import LAB_ZONE, Backup, RestoreTarget, Stanza, restore_point
from lgcloud.ops.inventory import build_inventory


def test_the_repository_is_at_the_backup_site_on_its_own_volume(dev):
    backup = plan(dev).vm("backup")
    assert backup.site == "backup" and backup.data == "/var/lib/pgbackrest"
    assert set(backup.addresses) == {"mgmt", "interconnect"}


def test_only_databases_and_restore_vms_reach_the_repository(dev):
    topology = plan(dev)
    sources = set(topology.vm("backup").ingress["interconnect"])
    databases = {v.addresses["interconnect"] for v in topology.vms if v.role in ("db", "db-replica")}
    restores = {v.addresses["interconnect"] for v in topology.restore_vms}
    assert sources == {f"{a}:8432" for a in databases | restores}, "beyond pgBackRest's TLS port"


def test_a_database_is_reached_on_interconnect_by_its_peer_the_repository_and_the_chukan_only(dev):
    topology = plan(dev)
    db, replica = topology.vm("a-city-db"), topology.vm("a-city-db-replica")
    assert set(db.ingress["interconnect"]) == {
        replica.addresses["interconnect"],
        topology.vm("backup").addresses["interconnect"] + ":8432",
        topology.vm("chukan").addresses["interconnect"] + ":5432",
        topology.vm("chukan-standby").addresses["interconnect"] + ":5432",
    }


def test_restore_vms_exist_only_while_a_restore_is_recorded(dev):
    topology = plan(dev)
    assert not [v for v in topology.vms if v.role == "db-restore"]
    with_one = topology.with_restores(["b-town"])
    assert [v.name for v in with_one.vms if v.role == "db-restore"] == ["b-town-db-restore"]
    restore = topology.restore_vm("b-town")
    assert restore.site == "center" and restore.ingress["b-town-center"] == () and restore.ingress["interconnect"] == ()
    every = [a for v in (*topology.vms, *topology.restore_vms) for a in v.addresses.items()]
    assert len(every) == len(set(every)), "a restore VM shares an address"


def test_the_inventory_tells_the_roles_the_backup_policy(dev):
    backup = build_inventory(dev, key="id", pki_dir="/pki")["all"]["vars"]["lgcloud_backup"]
    assert backup["interval_seconds"] == 86400 and backup["generations"] == 7
    assert backup["address"] == plan(dev).vm("backup").addresses["interconnect"]


def _at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


def _stanza(*stops: str) -> Stanza:
    made = [
        Backup(f"2026120{i}F", "full", _at(stop) - datetime.timedelta(seconds=30), _at(stop), 1, 1, "", "")
        for i, stop in enumerate(stops)
    ]
    return Stanza("a-city", "ok", tuple(made), "", "")


def test_a_time_without_offset_is_read_in_the_lab_zone():
    target = RestoreTarget.at("2026-12-01T10:30:00")
    assert target.time == datetime.datetime(2026, 12, 1, 10, 30, tzinfo=LAB_ZONE)
    assert target.pgbackrest_args("20261201F")[:3] == [
        "--set=20261201F",
        "--type=time",
        "--target=2026-12-01 10:30:00+09:00",
    ]


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01T00:00:00", ""])
def test_a_time_that_is_not_one_is_refused(text):
    with pytest.raises(OperatorError) as refused:
        RestoreTarget.at(text)
    assert refused.value.exit_code == EXIT_BAD_INPUT and "ISO 8601" in refused.value.hint


@pytest.mark.parametrize("text", ["abc", "-5", "1.5", "0"])
def test_an_xid_that_is_not_one_is_refused(text):
    with pytest.raises(OperatorError) as refused:
        RestoreTarget.before_xid(text)
    assert refused.value.exit_code == EXIT_BAD_INPUT


def test_a_time_is_restored_from_the_newest_backup_before_it():
    stanza = _stanza("2026-12-01T09:00:00+09:00", "2026-12-01T10:00:00+09:00")
    now = _at("2026-12-01T11:00:00+09:00")
    assert restore_point(stanza, RestoreTarget.at("2026-12-01T09:30:00+09:00"), now) == "20261200F"
    assert restore_point(stanza, RestoreTarget.at("2026-12-01T10:30:00+09:00"), now) == "20261201F"
    assert restore_point(stanza, RestoreTarget("latest"), now) == "20261201F"


def test_a_transaction_is_restored_from_a_backup_older_than_it():
    stanza = _stanza("2026-12-01T09:00:00+09:00", "2026-12-01T10:00:00+09:00")
    now = _at("2026-12-01T11:00:00+09:00")
    assert restore_point(stanza, RestoreTarget.before_xid("48213"), now) == "20261200F", "not the oldest"
    damaged_at = RestoreTarget("xid", xid=48213, time=_at("2026-12-01T10:30:00+09:00"))
    assert restore_point(stanza, damaged_at, now) == "20261201F", "not the newest before the damage"
    assert "--target-exclusive" in damaged_at.pgbackrest_args("20261201F")


@pytest.mark.parametrize("when", ["2026-12-01T08:59:59+09:00", "2026-12-01T11:00:01+09:00"])
def test_a_time_outside_the_backups_is_refused_with_the_range(when):
    stanza = _stanza("2026-12-01T09:00:00+09:00")
    with pytest.raises(OperatorError) as refused:
        restore_point(stanza, RestoreTarget.at(when), _at("2026-12-01T11:00:00+09:00"))
    assert refused.value.exit_code == EXIT_BAD_INPUT
    assert "restorable: from 2026-12-01T09:00:00+09:00" in refused.value.hint
    assert "to now (2026-12-01T11:00:00+09:00)" in refused.value.hint


def test_a_municipality_without_backups_is_refused():
    with pytest.raises(OperatorError) as refused:
        restore_point(_stanza(), RestoreTarget("latest"), _at("2026-12-01T11:00:00+09:00"))
    assert "lgcloud backup run --municipality a-city" in refused.value.hint
