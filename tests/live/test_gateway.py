"""The LGWAN-ASP front (the gateway role): HAProxy on the gateway and on its standby.

An office reaches its own municipality's services by name and nothing else; a stopped app shows
as DOWN on the stats and Prometheus endpoint, which answers on mgmt only, and comes back.
"""

from __future__ import annotations

import csv
import io
import time
import urllib.request

import pytest

from lgcloud.model.naming import identifier

from .conftest import probe
from .offices import call

pytestmark = pytest.mark.live

STATS_PORT = 8404


def stats(lab, gateway: str) -> dict[tuple[str, str], str]:
    """(proxy, server) -> status, from HAProxy's stats CSV, fetched by the controller over mgmt."""
    url = f"http://{lab.vm(gateway).addresses['mgmt']}:{STATS_PORT}/stats;csv"
    with urllib.request.urlopen(url, timeout=5) as response:
        rows = csv.DictReader(io.StringIO(response.read().decode().lstrip("# ")))
        return {(row["pxname"], row["svname"]): row["status"] for row in rows}


def wait_for_status(lab, gateway: str, key: tuple[str, str], wanted: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = stats(lab, gateway).get(key, "absent")
        if status.startswith(wanted) or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


@pytest.mark.hosts("role_gateway")
def test_haproxy_runs_under_runit_on_the_access_addresses_only(configured, vm, lab, name):
    host = vm(name)
    assert host.check_output("sv status haproxy").startswith("run:")
    addresses = lab.vm(name).addresses
    for segment in ("lgwan", "ipvpn"):
        assert host.socket(f"tcp://{addresses[segment]}:443").is_listening, f"not listening on {segment}"
        assert not host.socket(f"tcp://{addresses[segment]}:80").is_listening, f"plain HTTP on {segment}"
    assert not host.socket("tcp://0.0.0.0:443").is_listening, "listens on every address"
    assert not host.socket(f"tcp://{addresses['mgmt']}:443").is_listening, "the front listens on mgmt"


SYSTEMS = ("jumin", "zei")  # what the gateway publishes for every municipality of the dev stack


@pytest.mark.municipalities
@pytest.mark.parametrize("system", SYSTEMS)
def test_an_office_reaches_its_own_service(configured, vm, m, system):
    response = call(vm(f"{m.id}-terminal"), m.id, "GET", "/healthz", system=system)
    assert response.status == 200, response.body
    assert response.json()["municipality_code"] == m.code, response.body


@pytest.mark.municipalities(pairs=True)
@pytest.mark.parametrize("system", SYSTEMS)
def test_an_office_is_refused_another_municipality_service(configured, vm, lab, office, other, system):
    gateway = lab.vm("gateway").addresses[office.access]
    response = call(vm(f"{office.id}-terminal"), other.id, "GET", "/healthz", via=gateway, system=system)
    assert response.status == 403, f"{office.id} got {other.id}'s service: {response.status} {response.body!r}"
    assert other.code not in response.text


@pytest.mark.parametrize(
    "name", ["nosuch.a-city.lgwan.test", "jumin.z-town.lgwan.test", "jumin.a-city.lgwan.test.example"]
)
def test_an_unknown_name_is_404(configured, vm, lab, dev, name):
    terminal = vm(f"{dev.municipalities[0].id}-terminal")
    gateway = lab.vm("gateway").addresses[dev.municipalities[0].access]
    status = terminal.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {name}' https://{gateway}/")
    assert status == "404", f"{name}: {status}"


@pytest.mark.hosts("role_gateway")
def test_metrics_answer_on_the_mgmt_address_only(configured, vm, lab, dev, name):
    addresses = lab.vm(name).addresses
    with urllib.request.urlopen(f"http://{addresses['mgmt']}:{STATS_PORT}/metrics", timeout=5) as response:
        assert response.status == 200
        metrics = response.read().decode()
    assert 'haproxy_server_status{proxy="jumin_a_city"' in metrics, metrics[:500]
    terminal = dev.municipalities[0]
    seen = probe(vm(f"{terminal.id}-terminal"), [(addresses[terminal.access], STATS_PORT)])
    assert not any(seen.values()), f"the stats endpoint answers an office: {seen}"


@pytest.mark.municipalities
@pytest.mark.parametrize(("gateway", "app"), [("gateway", "app"), ("gateway-standby", "app-standby")])
@pytest.mark.parametrize("system", SYSTEMS)
def test_every_app_is_up_behind_its_gateway(configured, lab, gateway, app, m, system):
    key = (f"{system}_{identifier(m.id)}", f"{m.id}-{app}")
    assert wait_for_status(lab, gateway, key, "UP", timeout=10).startswith("UP"), f"{gateway}: {key}"


def test_a_stopped_app_is_down_and_comes_back(configured, vm, lab, dev):
    m = dev.municipalities[0]
    app, key = vm(f"{m.id}-app"), (f"jumin_{identifier(m.id)}", f"{m.id}-app")
    assert wait_for_status(lab, "gateway", key, "UP", timeout=10).startswith("UP"), "not UP to begin with"
    try:
        app.check_output("sv stop jumin")
        assert wait_for_status(lab, "gateway", key, "DOWN", timeout=20).startswith("DOWN"), (
            "HAProxy did not notice the stopped app"
        )
        response = call(vm(f"{m.id}-terminal"), m.id, "GET", "/healthz")
        assert response.status == 503, response.body
    finally:
        app.run("sv start jumin")
    assert wait_for_status(lab, "gateway", key, "UP", timeout=30).startswith("UP"), "the app did not come back"
    assert call(vm(f"{m.id}-terminal"), m.id, "GET", "/healthz").status == 200
