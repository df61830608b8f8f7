"""`lgcloud configure`: every VM configured, a second run changes nothing, and a run after a
successful one runs only the VMs changed since."""

from __future__ import annotations

import pytest

from .conftest import configure

pytestmark = pytest.mark.live


def test_every_running_vm_was_configured(configured, lab):
    assert set(configured["hosts"]) == {vm.name for vm in lab.vms}
    failed = {h: r["failures"] for h, r in configured["hosts"].items() if r["failed"] or r["unreachable"]}
    assert not failed, failed


def test_a_second_run_of_every_vm_changes_nothing(configured):
    again = configure("--full")
    assert set(again["hosts"]) == set(configured["hosts"]), "--full left VMs out"
    changed = {host: r["changed"] for host, r in again["hosts"].items() if r["changed"]}
    assert not changed, f"not idempotent: {changed}"


def test_a_run_after_a_successful_one_runs_no_vm(configured):
    configure()  # whatever ran before: a successful run (of every VM only if none was recorded)
    again = configure()
    assert again["hosts"] == {}, f"run although unchanged: {sorted(again['hosts'])}"
    assert set(again["converged"]) == set(configured["hosts"])


# A file of a role changed by hand on one VM, a service stopped on another: the next run runs
# those two VMs' roles, and only theirs, and puts both back.
EDITED, STOPPED = "a-city-terminal", "a-city-app-standby"


def test_a_vm_changed_by_hand_is_configured_again_and_only_it(configured, vm):
    configure()
    vm(EDITED).check_output("echo LANG=C > /etc/default/locale")
    vm(STOPPED).check_output("sv down zei")
    try:
        again = configure()
    finally:
        vm(STOPPED).run("sv up zei")
    assert set(again["hosts"]) == {EDITED, STOPPED}, f"ran: {sorted(again['hosts'])}"
    assert again["hosts"][EDITED]["changed"] and again["hosts"][STOPPED]["changed"]
    assert set(again["converged"]) == set(configured["hosts"]) - {EDITED, STOPPED}
    assert vm(EDITED).file("/etc/default/locale").content_string.strip() == "LANG=ja_JP.UTF-8"
    assert vm(STOPPED).check_output("sv status zei").startswith("run:")
    assert configure()["hosts"] == {}, "the repaired VMs ran again"


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
