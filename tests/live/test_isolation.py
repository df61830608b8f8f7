"""The isolation policy of the design, checked by real connection attempts between VMs.

The expected matrix is written from the policy's words, not from the firewall the program
declares, so a wrong firewall shows up here:

- a municipality's office reaches the center through the gateway only;
- no municipality reaches another's segment, nor its VMs over a shared one;
- mgmt is for operations: only the controller, the bastion and the monitor open connections on it;
- replication crosses only `interconnect`, each database to its own replica;
- nothing in a マイナンバー segment has a route out of the lab.
"""

from __future__ import annotations

import socket

import pytest

from lgcloud.model.config import load_stack
from lgcloud.model.topology import Topology, VmPlan, plan

from .conftest import probe

pytestmark = pytest.mark.live
TOPOLOGY = plan(load_stack("dev"))
OPERATORS = {"bastion", "monitor"}
SOURCES = [
    "a-city-terminal",
    "c-village-terminal",
    "a-city-app",
    "a-city-db",
    "a-city-db-replica",
    "b-town-app",
    "b-town-db",
    "gateway",
    "gateway-standby",
    "bastion",
    "monitor",
]


def allowed(source: VmPlan, target: VmPlan, segment: str) -> bool:
    """May `source` open a connection to `target`'s address on `segment`?"""
    if segment not in source.addresses:
        return False  # segments are not routed to each other
    if segment == "mgmt":
        return source.name in OPERATORS
    if segment in ("lgwan", "ipvpn"):
        return "gateway" in (source.role, target.role)
    if segment == "interconnect":
        return source.municipality == target.municipality
    return True  # a closed segment holds one municipality's VMs and the gateway that fronts them


def matrix(topology: Topology, source: VmPlan) -> dict[str, bool]:
    return {
        f"{address}:22": allowed(source, target, segment)
        for target in topology.vms
        if target.name != source.name
        for segment, address in target.addresses.items()
    }


@pytest.fixture(scope="module")
def observed(vm):
    found = {}
    for name in SOURCES:
        targets = [tuple(k.rsplit(":", 1)) for k in matrix(TOPOLOGY, TOPOLOGY.vm(name))]
        found[name] = probe(vm(name), [(a, int(p)) for a, p in targets])
    return found


@pytest.mark.parametrize("source", SOURCES)
def test_reachability_matches_the_policy(observed, source):
    expected = matrix(TOPOLOGY, TOPOLOGY.vm(source))
    owner = {f"{a}:22": f"{t.name}@{s}" for t in TOPOLOGY.vms for s, a in t.addresses.items()}
    wrong = {
        owner[k]: ("reached" if observed[source][k] else "refused")
        for k in expected
        if observed[source][k] != expected[k]
    }
    assert not wrong, f"{source}: against policy: {wrong}"
    assert any(expected.values()) or source.endswith("terminal"), f"{source} reaches nothing at all"


def test_the_matrix_has_both_kinds_of_pair(observed):
    results = [ok for by_source in observed.values() for ok in by_source.values()]
    assert any(results) and not all(results), "a matrix of one kind proves nothing"


def test_each_terminal_reaches_its_gateway(observed):
    for m in load_stack("dev").municipalities:
        name = f"{m.id}-terminal"
        if name in observed:
            gateway = TOPOLOGY.vm("gateway").addresses[m.access]
            assert observed[name][f"{gateway}:22"], f"{name} cannot reach the gateway on {m.access}"


@pytest.mark.parametrize("vm_name", [v.name for v in TOPOLOGY.vms])
def test_no_route_out_of_the_lab(vm, vm_name):
    routes = vm(vm_name).check_output("ip -4 route show default")
    assert routes == "", f"{vm_name} has a default route: {routes}"


def test_the_controller_reaches_every_vm_on_mgmt(lab):
    for target in lab.vms:
        with socket.create_connection((target.addresses["mgmt"], 22), timeout=2):
            pass
