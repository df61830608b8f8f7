"""`lgcloud configure`: every VM configured, and a second run changes nothing."""

from __future__ import annotations

import pytest

from .conftest import configure

pytestmark = pytest.mark.live


def test_every_running_vm_was_configured(configured, lab):
    assert set(configured["hosts"]) == {vm.name for vm in lab.vms}
    failed = {h: r["failures"] for h, r in configured["hosts"].items() if r["failed"] or r["unreachable"]}
    assert not failed, failed


def test_a_second_run_changes_nothing(configured):
    again = configure()
    changed = {host: r["changed"] for host, r in again["hosts"].items() if r["changed"]}
    assert not changed, f"not idempotent: {changed}"


@pytest.mark.hosts("all")
def test_common_role_settings(configured, vm, name):
    host = vm(name)
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Asia/Tokyo"
    assert host.file("/etc/default/locale").content_string.strip() == "LANG=ja_JP.UTF-8"
    assert "allowusers root" in host.check_output("sshd -T")


@pytest.mark.municipalities
def test_terminals_reach_their_services_by_name(configured, vm, m):
    hosts = vm(f"{m.id}-terminal").file("/etc/hosts").content_string
    assert f"jumin.{m.id}.lgwan.test" in hosts, f"{m.id}-terminal: {hosts}"
