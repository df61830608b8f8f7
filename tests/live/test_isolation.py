"""The isolation policy of the design, checked by real connection attempts between VMs.

The expected matrix is written from the policy's words, not from the firewall the program
declares, so a wrong firewall shows up here:

- a municipality's office reaches the center through the gateway only;
- no municipality reaches another's segment, nor its VMs over a shared one;
- mgmt is for operations: only the controller, the bastion and the monitor open connections on it;
- replication crosses only `interconnect`, each database to its own replica; backups cross it
  between the repository and each database, at pgBackRest's port only;
- nothing in a マイナンバー segment has a route out of the lab.

Every VM of the inventory is a source, and every address of every other VM a target.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from lgcloud.model.naming import BACKUP_TLS_PORT
from lgcloud.model.topology import Topology, VmPlan

from .conftest import group, probe

pytestmark = pytest.mark.live
OPERATORS = {"bastion", "monitor"}
SSH = 22


def allowed(source: VmPlan, target: VmPlan, segment: str, port: int = SSH) -> bool:
    """May `source` open a connection to `target`'s address on `segment` (at `port`)?"""
    if segment not in source.addresses:
        return False  # segments are not routed to each other
    if segment == "mgmt":
        return source.name in OPERATORS
    if segment in ("lgwan", "ipvpn"):
        return "gateway" in (source.role, target.role)
    if segment == "interconnect":
        # Backups: the repository and every database meet at pgBackRest's port, and nowhere else.
        if "backup" in (source.role, target.role):
            return port == BACKUP_TLS_PORT
        return source.municipality == target.municipality
    return True  # a closed segment holds one municipality's VMs and the gateway that fronts them


def matrix(topology: Topology, source: VmPlan) -> dict[str, bool]:
    """Every other VM's SSH on each of its addresses, and its pgBackRest port on interconnect."""
    return {
        f"{address}:{port}": allowed(source, target, segment, port)
        for target in topology.vms
        if target.name != source.name
        for segment, address in target.addresses.items()
        for port in ((SSH, BACKUP_TLS_PORT) if segment == "interconnect" else (SSH,))
    }


@pytest.fixture(scope="module")
def observed(vm, lab):
    """From every VM at once, which addresses of the others accept a connection on port 22."""

    def from_source(name: str) -> dict[str, bool]:
        targets = [tuple(k.rsplit(":", 1)) for k in matrix(lab, lab.vm(name))]
        return probe(vm(name), [(a, int(p)) for a, p in targets])

    sources = group("all")
    with ThreadPoolExecutor(6) as pool:
        return dict(zip(sources, pool.map(from_source, sources)))


@pytest.mark.hosts("all")
def test_reachability_matches_the_policy(observed, lab, name):
    expected = matrix(lab, lab.vm(name))
    owner = {
        f"{a}:{p}": f"{t.name}@{s}:{p}" for t in lab.vms for s, a in t.addresses.items() for p in (SSH, BACKUP_TLS_PORT)
    }
    wrong = {
        owner[k]: ("reached" if observed[name][k] else "refused") for k in expected if observed[name][k] != expected[k]
    }
    assert not wrong, f"{name}: against policy: {wrong}"
    # A probe that could reach nothing at all would agree with every "refused" for the wrong reason.
    assert any(observed[name].values()), f"{name} reached nothing: is its probe working?"


def test_the_matrix_has_both_kinds_of_pair(observed):
    results = [ok for by_source in observed.values() for ok in by_source.values()]
    assert any(results) and not all(results), "a matrix of one kind proves nothing"


@pytest.mark.municipalities
def test_each_terminal_reaches_its_gateway(observed, lab, m):
    gateway = lab.vm("gateway").addresses[m.access]
    assert observed[f"{m.id}-terminal"][f"{gateway}:22"], f"{m.id}-terminal cannot reach the gateway on {m.access}"


@pytest.mark.hosts("all")
def test_no_route_out_of_the_lab(vm, name):
    routes = vm(name).check_output("ip -4 route show default")
    assert routes == "", f"{name} has a default route: {routes}"


@pytest.mark.hosts("all")
def test_the_controller_reaches_every_vm_on_mgmt(lab, name):
    with socket.create_connection((lab.vm(name).addresses["mgmt"], 22), timeout=2) as conn:
        conn.settimeout(2)
        banner = conn.recv(8)
    assert banner.startswith(b"SSH-"), f"{name} on mgmt answers {banner!r}, not sshd"
