"""The Ansible inventory of a stack, generated from its plan and the VMs running now.

Groups per site (``site_center``), per role (``role_db_replica``) and per municipality
(``municipality_a_city``); one structure, ``lgcloud_municipalities``, tells every role what it
needs of each municipality::

    >>> from lgcloud.model.config import load_stack
    >>> sorted(build_inventory(load_stack("dev"), key="id")["all"]["children"])[:3]
    ['municipality_a_city', 'municipality_b_town', 'municipality_c_village']
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..model.linkage import load_permissions
from ..model.naming import (
    BACKUP_COMMON_NAME,
    BACKUP_TLS_PORT,
    BROKER_PORT,
    CHUKAN_DATABASE,
    CHUKAN_PORT,
    CHUKAN_ROLE,
    EXPORTER_PORT,
    OFFICE_TLS,
    PORTAL_API_PORT,
    PORTAL_METRICS_PORT,
    PORTAL_NAME,
    PORTAL_PORT,
    POSTGRESQL_PORT,
    REPLACED_GENERATIONS,
    SHARED,
    identifier,
    municipality_ids,
)
from ..model.schema import StackConfig, duration_seconds
from ..model.topology import Topology, plan
from ..state.restores import active_restores

__all__ = ["build_inventory", "group"]


def group(name: str) -> str:
    """An inventory group's name for a role or municipality (`-` is not allowed there)."""
    return identifier(name)


def _municipalities(cfg: StackConfig, topology: Topology) -> list[dict[str, Any]]:
    """What roles need to know of each municipality, in one structure shared by all hosts."""
    described = []
    for m in cfg.municipalities:
        vm = {role: topology.vm(f"{m.id}-{role}") for role in ("app", "app-standby", "db", "db-replica")}
        described.append(
            {
                "id": m.id,
                "group": group(m.id),
                "code": m.code,
                "name": m.name,
                "access": m.access,
                "gateway": topology.vm("gateway").addresses[m.access],
                "gateway_standby": topology.vm("gateway-standby").addresses[m.access],
                "service_address": topology.service_addresses[m.id],
                "systems": list(m.systems),
                "replication": m.replication,
                "terminal": str(m.terminal),
                "app": vm["app"].addresses[f"{m.id}-center"],
                "app_standby": vm["app-standby"].addresses[f"{m.id}-backup"],
                "db": vm["db"].addresses[f"{m.id}-center"],
                "db_interconnect": vm["db"].addresses["interconnect"],
                "db_replica": vm["db-replica"].addresses[f"{m.id}-backup"],
                "db_replica_interconnect": vm["db-replica"].addresses["interconnect"],
                # The 中間サーバー, on this municipality's closed segment at each site.
                "chukan": topology.vm("chukan").addresses[f"{m.id}-center"],
                "chukan_standby": topology.vm("chukan-standby").addresses[f"{m.id}-backup"],
            }
        )
    return described


def build_inventory(
    cfg: StackConfig,
    key: Path | str,
    running: set[str] | None = None,
    pki_dir: Path | str = "",
    lgwan_dir: Path | str = "",
    jpki_dir: Path | str = "",
) -> dict[str, Any]:
    """An Ansible YAML inventory of the stack's VMs (only those `running`, when given), reached
    as root with the private `key`; their backup certificates are in `pki_dir`, the LGWAN-ASP
    front's and the offices' in `lgwan_dir`, the portal's and the card CA's in `jpki_dir`."""
    # A restore VM is configured like any VM while it exists (lgcloud.ops.restore).
    topology = plan(cfg).with_restores(active_restores(cfg.stack))
    ids = municipality_ids(cfg.municipalities)
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"hosts": {}})
    hosts = {}
    for vm in topology.vms:
        if running is not None and vm.name not in running:
            continue
        hosts[vm.name] = {
            "ansible_host": vm.addresses["mgmt"],
            "lgcloud_vm": vm.name,
            "lgcloud_role": vm.role,
            "lgcloud_site": vm.site,
            "lgcloud_municipality": ids[vm.municipality],
            "lgcloud_addresses": vm.addresses,
        }
        # Prefixed so that no group shares a name with a VM (the VM `gateway`, the role group `role_gateway`).
        membership = [f"site_{vm.site}", f"role_{group(vm.role)}"]
        if vm.municipality != SHARED:
            membership.append(f"municipality_{group(ids[vm.municipality])}")
        for name in membership:
            groups[name]["hosts"][vm.name] = None
    return {
        "all": {
            "hosts": hosts,
            "vars": {
                "ansible_user": "root",
                "ansible_connection": "ssh",  # OpenSSH under Mitogen: see lgcloud.ops.configure.ANSIBLE_SETTINGS
                "ansible_ssh_private_key_file": str(key),
                "ansible_python_interpreter": "/usr/bin/python3",
                "lgcloud_stack": cfg.stack,
                "lgcloud_mgmt_cidr": str(cfg.segments.mgmt),
                "lgcloud_interconnect_cidr": str(cfg.segments.interconnect),
                "lgcloud_controller": topology.controller,
                "lgcloud_exporter_port": EXPORTER_PORT,  # `lgcloud exporter` on the controller
                "lgcloud_replaced_generations": REPLACED_GENERATIONS,
                "lgcloud_monitor": topology.vm("monitor").addresses["mgmt"],
                "lgcloud_scrape_interval": cfg.monitoring.scrape_interval,
                # The backup repository, and where the controller keeps each VM's certificate for it.
                "lgcloud_backup": {
                    "address": topology.vm("backup").addresses["interconnect"],
                    "port": BACKUP_TLS_PORT,
                    "common_name": BACKUP_COMMON_NAME,
                    "interval_seconds": duration_seconds(cfg.backup.interval),
                    "generations": cfg.backup.generations,
                },
                "lgcloud_pki_dir": str(pki_dir),
                "lgcloud_lgwan_pki_dir": str(lgwan_dir),
                "lgcloud_office_tls": OFFICE_TLS,
                "lgcloud_municipalities": _municipalities(cfg, topology),
                # 番号連携: the 中間サーバー's two VMs (center first) and the broker.
                "lgcloud_chukan": {
                    "port": CHUKAN_PORT,
                    # Each municipality's tenant: this database of its cluster, this role.
                    "database": CHUKAN_DATABASE,
                    "user": CHUKAN_ROLE,
                    "postgresql_port": POSTGRESQL_PORT,
                    "lgwan": [topology.vm(v).addresses["lgwan"] for v in ("chukan", "chukan-standby")],
                    "interconnect": [topology.vm(v).addresses["interconnect"] for v in ("chukan", "chukan-standby")],
                },
                "lgcloud_broker": {
                    "port": BROKER_PORT,
                    "address": topology.vm("broker").addresses["lgwan"],
                    "permissions": [row.model_dump() for row in load_permissions().permissions],
                },
                # マイ・ポータル on internet, and the broker's read API it calls there.
                "lgcloud_portal": {
                    "name": PORTAL_NAME,
                    "address": topology.vm("portal").addresses["internet"],
                    "port": PORTAL_PORT,
                    "metrics_port": PORTAL_METRICS_PORT,
                    "api": {"address": topology.vm("broker").addresses["internet"], "port": PORTAL_API_PORT},
                },
                "lgcloud_jpki_dir": str(jpki_dir),
            },
            "children": dict(groups),
        }
    }
