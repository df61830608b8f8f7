"""The isolation policy of the design as the live tests check it: what each VM may open to each
address of the others, written from the policy's words (see test_isolation), and the probe that
asks every VM at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from lgcloud.model.naming import (
    BACKUP_TLS_PORT,
    BROKER_PORT,
    CHUKAN_PORT,
    PORTAL_API_PORT,
    PORTAL_METRICS_PORT,
    PORTAL_PORT,
    POSTGRESQL_PORT,
)
from lgcloud.model.topology import Topology, VmPlan

from .conftest import group, probe

OPERATORS = {"bastion", "monitor"}
SSH = 22
PORTAL_PAGES_PORT = 8611  # roles/portal/defaults/main.yml: gunicorn behind HAProxy, on loopback only
LINKAGE = {"broker", "chukan"}


def ports(target: VmPlan, segment: str) -> tuple[int, ...]:
    """The ports probed at `target`'s address on `segment`: SSH, and where a service listens there."""
    if segment == "interconnect":
        return (SSH, BACKUP_TLS_PORT) + ((POSTGRESQL_PORT,) if target.role in ("db", "db-replica") else ())
    if target.role == "chukan" and segment != "mgmt":
        return (SSH, CHUKAN_PORT)
    if target.role == "broker" and segment == "lgwan":
        return (SSH, BROKER_PORT)
    if segment == "internet":
        # The one port each serves there, and the ports each serves elsewhere (which must not show).
        if target.role == "portal":
            return (SSH, PORTAL_PORT, PORTAL_METRICS_PORT, PORTAL_PAGES_PORT)
        return (SSH, PORTAL_API_PORT, BROKER_PORT)
    return (SSH,)


def allowed(source: VmPlan, target: VmPlan, segment: str, port: int | None = SSH) -> bool:
    """May `source` open a connection to `target`'s address on `segment` (at TCP `port`; None: a
    datagram, UDP or ICMP)?"""
    if segment not in source.addresses:
        return False  # segments are not routed to each other
    if segment == "mgmt":
        return source.name in OPERATORS
    if segment == "internet":
        # 三層分離: the portal is open to the internet at HTTPS; the broker answers the portal, at
        # its read API only; nothing else crosses, and no datagram at all.
        if target.role == "portal":
            return port == PORTAL_PORT
        return source.role == "portal" and port == PORTAL_API_PORT
    if segment == "lgwan" and target.role in LINKAGE:
        # 番号連携 over LGWAN: the 中間サーバー calls the broker, the broker calls the 中間サーバー back.
        if target.role == "broker":
            return source.role == "chukan" and port == BROKER_PORT
        return source.role == "broker" and port == CHUKAN_PORT
    if segment in ("lgwan", "ipvpn"):
        return "gateway" in (source.role, target.role)
    if segment == "interconnect" and "chukan" in (source.role, target.role):
        # The 中間サーバー reaches each tenant's database, at either end of its pair; nothing reaches it.
        return source.role == "chukan" and target.role in ("db", "db-replica") and port == POSTGRESQL_PORT
    if segment == "interconnect":
        # Backups: the repository and every database meet at pgBackRest's port, and nowhere else.
        if "backup" in (source.role, target.role):
            return port == BACKUP_TLS_PORT
        return source.municipality == target.municipality
    if target.role == "chukan":
        # On a closed segment, the 中間サーバー takes its own API calls from that segment's app only.
        return source.role in ("app", "app-standby") and port == CHUKAN_PORT
    # A closed segment holds one municipality's VMs and the jointly used VMs that serve it (the
    # gateway fronts them; the 中間サーバー answers them).
    return True


def matrix(topology: Topology, source: VmPlan) -> dict[str, bool]:
    """Every other VM's SSH on each of its addresses, and its pgBackRest port on interconnect."""
    return {
        f"{address}:{port}": allowed(source, target, segment, port)
        for target in topology.vms
        if target.name != source.name
        for segment, address in target.addresses.items()
        for port in ports(target, segment)
    }


def observe(vm, lab: Topology) -> dict[str, dict[str, bool]]:
    """From every VM at once, which addresses of the others accept a connection (SSH, pgBackRest)."""

    def from_source(name: str) -> dict[str, bool]:
        targets = [tuple(k.rsplit(":", 1)) for k in matrix(lab, lab.vm(name))]
        return probe(vm(name), [(a, int(p)) for a, p in targets])

    sources = group("all")
    with ThreadPoolExecutor(6) as pool:
        return dict(zip(sources, pool.map(from_source, sources)))


def against_policy(lab: Topology, observed: dict[str, dict[str, bool]], name: str) -> dict[str, str]:
    """What `name` reached or was refused against the policy, by target VM, segment and port."""
    expected = matrix(lab, lab.vm(name))
    owner = {f"{a}:{p}": f"{t.name}@{s}:{p}" for t in lab.vms for s, a in t.addresses.items() for p in ports(t, s)}
    return {
        owner[k]: ("reached" if observed[name][k] else "refused") for k in expected if observed[name][k] != expected[k]
    }


def host_ends(topology: Topology, source: VmPlan) -> list[str]:
    return [str(topology.segment(key).cidr.network_address + 1) for key in source.addresses]
