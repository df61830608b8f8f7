"""The stack's topology as plain data: segments, VMs, their addresses and ingress policy.

The Pulumi program turns this plan into resources; validation, the compose file of the
benchmark and the tests read the same plan, so the address rules live only here::

    >>> from lgcloud.model.config import load_stack
    >>> [vm.name for vm in plan(load_stack("dev")).vms][:2]
    ['gateway', 'gateway-standby']
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .naming import (
    BACKUP_TLS_PORT,
    BROKER_PORT,
    CHUKAN_PORT,
    NATIONAL,
    PORTAL_API_PORT,
    PORTAL_PORT,
    POSTGRESQL_PORT,
    SHARED,
)
from .schema import Allocation, StackConfig

__all__ = ["DATA_PATHS", "SegmentPlan", "Topology", "VmPlan", "plan"]

# Fixed host numbers on the segments shared by the whole stack.
_MGMT_HOSTS = {
    "bastion": 2,
    "monitor": 3,
    "gateway": 4,
    "gateway-standby": 5,
    "backup": 6,
    "broker": 7,
    "chukan": 8,
    "chukan-standby": 9,
    "portal": 200,  # above the municipalities' (five each from 10), below the restore VMs'
}
# The databases' from 10 up, restore VMs' from the top down.
_INTERCONNECT_HOSTS = {"backup": 5, "chukan": 6, "chukan-standby": 7}
_MGMT_FIRST_MUNICIPAL = 10  # then five per municipality, in config order
_WAN_HOSTS = {"gateway": 2, "gateway-standby": 3}  # on lgwan, ipvpn and shared
_LGWAN_HOSTS = {"broker": 4, "chukan": 5, "chukan-standby": 6}
# インターネット接続系: the portal, and the broker's read API for it.
_INTERNET_HOSTS = {"portal": 10, "broker": 20}
# On a municipality's closed segment.
_CLOSED_HOSTS = {"gateway": 2, "app": 10, "db": 11, "db-restore": 12, "chukan": 13}
_MUNICIPAL_ROLES = ("app", "db", "app-standby", "db-replica", "terminal")
# VMs that hold data, and where: the databases' clusters, the monitor's time series, the backups.
DATA_PATHS = {
    "db": "/var/lib/postgresql",
    "db-replica": "/var/lib/postgresql",
    "db-restore": "/var/lib/postgresql",
    "monitor": "/var/lib/prometheus",
    "backup": "/var/lib/pgbackrest",
    "broker": "/var/lib/broker",
    "portal": "/var/lib/portal",
}


@dataclass(frozen=True)
class SegmentPlan:
    """A network segment: a Docker network on the site that hosts it."""

    key: str  # "lgwan", or "<municipality>-<site>" for a closed segment
    cidr: ipaddress.IPv4Network
    site: str
    municipality: str  # the 地方公共団体コード, or SHARED
    internal: bool
    purpose: str

    @property
    def router(self) -> str:
        """The segment's own first address, held by the Docker Engine's bridge."""
        return str(self.cidr.network_address + 1)


@dataclass(frozen=True)
class VmPlan:
    """A VM: where it runs, what it is, which segments it sits on and who may reach it."""

    name: str
    role: str
    site: str  # "center", "backup", "office" for a municipality's terminal, or "national"
    municipality: str  # code, or SHARED
    allocation: Allocation
    addresses: dict[str, str]  # segment key -> IPv4 address
    # segment key -> sources allowed to open connections on that segment (absent: open); a source
    # "<address>:<port>" may open connections to that TCP port only
    ingress: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Where the VM keeps data that must outlive it (its data volume is mounted there), or None.
    data: str | None = None


@dataclass(frozen=True)
class Topology:
    segments: tuple[SegmentPlan, ...]
    vms: tuple[VmPlan, ...]
    # municipality id -> the address its office uses for its services on its access segment.
    # Held by the gateway of the site serving it; a failover moves it, the name stays.
    service_addresses: dict[str, str] = field(default_factory=dict)
    # The host that runs the engine, Ansible and the exporter: the mgmt segment's first address,
    # which the host's bridge holds.
    controller: str = ""
    # One per municipality, made only while `lgcloud restore` has a restore there to inspect.
    restore_vms: tuple[VmPlan, ...] = ()

    def segment(self, key: str) -> SegmentPlan:
        return next(s for s in self.segments if s.key == key)

    def vm(self, name: str) -> VmPlan:
        return next(v for v in self.vms if v.name == name)

    def with_restores(self, municipality_ids: Iterable[str]) -> Topology:
        """This topology with the restore VMs of these municipalities among its VMs."""
        wanted = {f"{m}-db-restore" for m in municipality_ids}
        return replace(self, vms=self.vms + tuple(v for v in self.restore_vms if v.name in wanted))

    def restore_vm(self, municipality_id: str) -> VmPlan:
        """Where `lgcloud restore` puts a municipality's restored database to be inspected."""
        return next(v for v in self.restore_vms if v.name == f"{municipality_id}-db-restore")

    def allocated(self, site: str) -> Allocation:
        at_site = [v.allocation for v in self.vms if v.site == site]
        return Allocation.model_construct(
            vcpus=sum(a.vcpus for a in at_site), memory_mb=sum(a.memory_mb for a in at_site)
        )


def _host(cidr: ipaddress.IPv4Network, number: int, what: str) -> str:
    address = cidr.network_address + number
    if address >= cidr.broadcast_address:
        raise ValueError(f"segment {cidr} is too small for {what} (host number {number})")
    return str(address)


def plan(cfg: StackConfig) -> Topology:
    """Derive every segment and VM of a validated stack config."""
    seg = cfg.segments
    segments = [
        SegmentPlan("mgmt", seg.mgmt, "center", SHARED, True, "operations: bastion, monitoring, SSH"),
        SegmentPlan("lgwan", seg.lgwan, "center", SHARED, True, "LGWAN: offices to LGWAN-ASP services"),
        SegmentPlan("ipvpn", seg.ipvpn, "center", SHARED, True, "IP-VPN: a carrier's closed VPN"),
        SegmentPlan("shared", seg.shared, "center", SHARED, True, "共通基盤: the shared base"),
        SegmentPlan("interconnect", seg.interconnect, "center", SHARED, True, "center to backup: replication"),
        SegmentPlan("internet", seg.internet, "center", SHARED, False, "citizen-facing portal only"),
    ]
    for m in cfg.municipalities:
        for site in ("center", "backup"):
            segments.append(
                SegmentPlan(
                    f"{m.id}-{site}", m.segments[site], site, m.code, True, f"{m.name} マイナンバー利用事務系 at {site}"
                )
            )

    controller = str(seg.mgmt.network_address + 1)
    operators = (
        controller,
        _host(seg.mgmt, _MGMT_HOSTS["bastion"], "the bastion"),
        _host(seg.mgmt, _MGMT_HOSTS["monitor"], "the monitor"),
    )

    def mgmt(number: int, what: str) -> dict[str, str]:
        return {"mgmt": _host(seg.mgmt, number, what)}

    # Service addresses count down from the top of the access segment, in config order.
    service_addresses: dict[str, str] = {}
    for m in cfg.municipalities:
        segment = getattr(seg, m.access)
        taken = sum(1 for other in service_addresses if cfg.municipality(other).access == m.access)
        service_addresses[m.id] = _host(segment, segment.num_addresses - 2 - taken, f"{m.id}'s service address")

    vms: list[VmPlan] = []
    for role, site in (("gateway", "center"), ("gateway-standby", "backup")):
        addresses = mgmt(_MGMT_HOSTS[role], role)
        for wan in ("lgwan", "ipvpn", "shared"):
            addresses[wan] = _host(getattr(seg, wan), _WAN_HOSTS[role], role)
        for m in cfg.municipalities:
            addresses[f"{m.id}-{site}"] = _host(m.segments[site], _CLOSED_HOSTS["gateway"], role)
        vms.append(VmPlan(role, "gateway", site, SHARED, cfg.allocations.gateway, addresses, {"mgmt": operators}))
    # The monitor watches from the backup site: it must see the center fail, not fail with it.
    for role, site in (("monitor", "backup"), ("bastion", "center")):
        vms.append(
            VmPlan(
                role,
                role,
                site,
                SHARED,
                getattr(cfg.allocations, role),
                mgmt(_MGMT_HOSTS[role], role),
                {"mgmt": operators},
                DATA_PATHS.get(role),
            )
        )

    # The backup repository is at the backup site, beside the replicas, on the interconnect its
    # databases archive over. It takes connections from every database's address there, each
    # admitted by its client certificate to its own municipality's backups only.
    backup = _host(seg.interconnect, _INTERCONNECT_HOSTS["backup"], "the backup repository")
    restores = [
        _host(seg.interconnect, seg.interconnect.num_addresses - 2 - index, f"{m.id}'s restore VM")
        for index, m in enumerate(cfg.municipalities)
    ]
    databases = tuple(
        _host(seg.interconnect, 10 + index * 2 + k, f"{m.id}'s databases")
        for index, m in enumerate(cfg.municipalities)
        for k in range(2)
    )
    # The 中間サーバー (jointly used): its API on every municipality's closed segment at its site, for
    # that municipality's apps, and on lgwan for the broker; each tenant's 副本 in a database of the
    # municipality's own cluster, reached over the interconnect wherever the primary is.
    chukan_interconnect = {
        role: _host(seg.interconnect, _INTERCONNECT_HOSTS[role], role) for role in ("chukan", "chukan-standby")
    }
    lgwan = {role: _host(seg.lgwan, number, role) for role, number in _LGWAN_HOSTS.items()}
    for role, site in (("chukan", "center"), ("chukan-standby", "backup")):
        addresses = {**mgmt(_MGMT_HOSTS[role], role), "lgwan": lgwan[role], "interconnect": chukan_interconnect[role]}
        admitted: dict[str, tuple[str, ...]] = {
            "mgmt": operators,
            "lgwan": (f"{lgwan['broker']}:{CHUKAN_PORT}",),
            "interconnect": (),
        }
        for m in cfg.municipalities:
            key = f"{m.id}-{site}"
            addresses[key] = _host(m.segments[site], _CLOSED_HOSTS["chukan"], f"{role} on {key}")
            # Only the app VM of that segment: the other site's app reaches its own site's 中間サーバー.
            admitted[key] = (f"{_host(m.segments[site], _CLOSED_HOSTS['app'], key)}:{CHUKAN_PORT}",)
        vms.append(VmPlan(role, "chukan", site, SHARED, cfg.allocations.chukan, addresses, admitted))
    # The broker stands for a national system reached over LGWAN: the 中間サーバー only may call it.
    # On `internet` it answers the portal, and the portal only, at its one read API (三層分離).
    internet = {role: _host(seg.internet, number, role) for role, number in _INTERNET_HOSTS.items()}
    vms.append(
        VmPlan(
            "broker",
            "broker",
            NATIONAL,
            SHARED,
            cfg.allocations.broker,
            {**mgmt(_MGMT_HOSTS["broker"], "broker"), "lgwan": lgwan["broker"], "internet": internet["broker"]},
            {
                "mgmt": operators,
                "lgwan": tuple(f"{lgwan[r]}:{BROKER_PORT}" for r in ("chukan", "chukan-standby")),
                "internet": (f"{internet['portal']}:{PORTAL_API_PORT}",),
            },
            DATA_PATHS["broker"],
        )
    )
    # マイ・ポータル: the one citizen-facing service, HTTPS from anywhere on `internet`.
    vms.append(
        VmPlan(
            "portal",
            "portal",
            "center",
            SHARED,
            cfg.allocations.portal,
            {**mgmt(_MGMT_HOSTS["portal"], "portal"), "internet": internet["portal"]},
            {"mgmt": operators, "internet": (f"0.0.0.0/0:{PORTAL_PORT}",)},
            DATA_PATHS["portal"],
        )
    )

    vms.append(
        VmPlan(
            "backup",
            "backup",
            "backup",
            SHARED,
            cfg.allocations.backup,
            {**mgmt(_MGMT_HOSTS["backup"], "backup"), "interconnect": backup},
            {"mgmt": operators, "interconnect": tuple(f"{a}:{BACKUP_TLS_PORT}" for a in (*databases, *restores))},
            DATA_PATHS["backup"],
        )
    )

    restore_vms: list[VmPlan] = []
    for index, m in enumerate(cfg.municipalities):
        first = _MGMT_FIRST_MUNICIPAL + index * len(_MUNICIPAL_ROLES)
        number = {role: first + k for k, role in enumerate(_MUNICIPAL_ROLES)}
        link = {
            role: _host(seg.interconnect, 10 + index * 2 + k, f"{m.id}'s databases")
            for k, role in enumerate(("db", "db-replica"))
        }
        for role, site, kind, host in (
            ("app", "center", "app", "app"),
            ("db", "center", "db", "db"),
            ("app-standby", "backup", "app", "app"),
            ("db-replica", "backup", "db", "db"),
        ):
            addresses = mgmt(number[role], f"{m.id}-{role}")
            addresses[f"{m.id}-{site}"] = _host(m.segments[site], _CLOSED_HOSTS[host], f"{m.id}-{role}")
            ingress: dict[str, tuple[str, ...]] = {"mgmt": operators}
            if kind == "db":
                peer = "db-replica" if role == "db" else "db"
                addresses["interconnect"] = link[role]
                ingress["interconnect"] = (
                    link[peer],
                    f"{backup}:{BACKUP_TLS_PORT}",
                    *(f"{address}:{POSTGRESQL_PORT}" for address in chukan_interconnect.values()),
                )
            vms.append(
                VmPlan(
                    f"{m.id}-{role}",
                    role,
                    site,
                    m.code,
                    m.allocation_for(kind, cfg.allocations),
                    addresses,
                    ingress,
                    DATA_PATHS.get(role),
                )
            )
        gateways = tuple(
            next(v for v in vms if v.name == g).addresses[m.access] for g in ("gateway", "gateway-standby")
        )
        vms.append(
            VmPlan(
                f"{m.id}-terminal",
                "terminal",
                "office",
                m.code,
                m.allocation_for("terminal", cfg.allocations),
                {**mgmt(number["terminal"], f"{m.id}-terminal"), m.access: str(m.terminal)},
                {"mgmt": operators, m.access: gateways},
            )
        )
        # Counted down from the top of mgmt, so that adding one never moves another VM.
        restore_vms.append(
            VmPlan(
                f"{m.id}-db-restore",
                "db-restore",
                "center",
                m.code,
                m.allocation_for("db", cfg.allocations),
                {
                    **mgmt(seg.mgmt.num_addresses - 2 - index, f"{m.id}-db-restore"),
                    f"{m.id}-center": _host(m.segments["center"], _CLOSED_HOSTS["db-restore"], f"{m.id}-db-restore"),
                    "interconnect": restores[index],
                },
                {"mgmt": operators, f"{m.id}-center": (), "interconnect": ()},
                DATA_PATHS["db-restore"],
            )
        )
    # Validation checks the VMs against each other; restore VMs, counted from the top, are checked here.
    holders = {(key, address): vm.name for vm in vms for key, address in vm.addresses.items()}
    for vm in restore_vms:
        for key, address in vm.addresses.items():
            if (key, address) in holders:
                other = holders[(key, address)]
                raise ValueError(f"segment {key} is too small: {vm.name} and {other} would share {address}")
    return Topology(tuple(segments), tuple(vms), service_addresses, controller, tuple(restore_vms))
