"""The monitor VM: Prometheus under runit scrapes every VM of the lab over mgmt."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from lgcloud.model.naming import EXPORTER_PORT
from lgcloud.observe.exporter import exporter_address

pytestmark = pytest.mark.live


def targets(lab) -> list[dict]:
    address = lab.vm("monitor").addresses["mgmt"]
    with urllib.request.urlopen(f"http://{address}:9090/api/v1/targets", timeout=5) as response:
        return json.load(response)["data"]["activeTargets"]


def test_prometheus_config_is_valid(configured, vm):
    result = vm("monitor").run("promtool check config /etc/prometheus/prometheus.yml")
    assert result.rc == 0, result.stdout + result.stderr


def test_every_vm_is_scraped_and_up(configured, lab):
    deadline = time.monotonic() + 60  # a new target is up after its first scrape
    while True:
        found = {t["labels"].get("vm"): t["health"] for t in targets(lab) if t["labels"]["job"] == "node"}
        if set(found) == {v.name for v in lab.vms} and set(found.values()) == {"up"}:
            break
        assert time.monotonic() < deadline, f"targets not all up: {found}"
        time.sleep(2)


@pytest.mark.parametrize("service", ["prometheus", "alertmanager"])
def test_monitoring_services_run_under_runit(configured, vm, service):
    assert vm("monitor").check_output(f"sv status {service}").startswith(f"run: {service}")


@pytest.fixture(scope="module")
def exporter(configured):
    result = subprocess.run(  # what `make up` starts
        [sys.executable, "-m", "lgcloud.cli", "exporter", "--detach", "--stack", "dev"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.hosts("role_terminal", "role_app", "role_db", "role_bastion")
def test_the_lgcloud_exporter_answers_the_monitor_only(exporter, vm, lab, dev, name):
    """It listens on mgmt, where every VM has a port: what it publishes (allocations, drills) is the
    provider's, not a tenant's to read."""
    url = f"http://{exporter_address(dev)}:{EXPORTER_PORT}/metrics"
    fetch = f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 {url} || true"
    assert vm("monitor").check_output(fetch) == "200"
    assert vm(name).check_output(fetch) in ("403", "000"), f"{name} reads the exporter"
