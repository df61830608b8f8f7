"""The lab's naming conventions, each defined once: resource names, labels, engine endpoints,
identifiers derived from a municipality's id, and the ports the controller serves.

    >>> vm_resource("dev", "a-city-db")
    'lgcloud-dev-a-city-db'
    >>> lab_name("dev", "lgcloud-dev-interconnect")
    'interconnect'
    >>> replica_slot("a-city")
    'a_city_replica'
    >>> service_url("jumin", "a-city")
    'https://jumin.a-city.lgwan.test'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

__all__ = [
    "BACKUP_COMMON_NAME",
    "BACKUP_TLS_PORT",
    "BROKER_PORT",
    "CHUKAN_PORT",
    "EXPORTER_PORT",
    "KEY_LABEL",
    "LABELS",
    "LOCAL_ENDPOINT",
    "MUNICIPALITY_LABEL",
    "NATIONAL",
    "POSTGRESQL_PORT",
    "NAME_LABEL",
    "REPLACED_GENERATIONS",
    "ROLE_LABEL",
    "OFFICE_TLS",
    "PORTAL_API_PORT",
    "PORTAL_METRICS_PORT",
    "PORTAL_NAME",
    "PORTAL_PORT",
    "SERVICE_DOMAIN",
    "SHARED",
    "SITE_LABEL",
    "STACK_LABEL",
    "backup_client",
    "endpoint_or_default",
    "identifier",
    "labels",
    "municipality_ids",
    "replica_slot",
    "lab_name",
    "segment_resource",
    "service_url",
    "vm_resource",
    "volume_resource",
]

# The local Docker Engine; a site that names it is served by the client's default connection.
LOCAL_ENDPOINT = "unix:///var/run/docker.sock"
# What the shared base (共通基盤) is called where a municipality would be: labels, metrics, inventory.
SHARED = "shared"
# Domain of the services' names as the offices resolve them (<system>.<municipality>.lgwan.test).
SERVICE_DOMAIN = "lgwan.test"
# The business system whose writes the drills measure (RTO and RPO as a clerk sees them); the
# others share its VMs and database but no drill has watched them recover.
DRILL_SYSTEM = "jumin"
# Where an office terminal keeps its client certificate for the LGWAN-ASP front, its key, and the
# CA that signs the front's certificate (the terminal and probe roles, the drills' clerk).
OFFICE_TLS = {
    "certificate": "/etc/lgcloud/office.crt",
    "key": "/etc/lgcloud/office.key",
    "ca": "/etc/lgcloud/lgwan-ca.crt",
}
# `lgcloud exporter` on the controller, at the mgmt segment's first address.
EXPORTER_PORT = 9480
# A database cluster replaced by a re-clone or a failback is moved aside, not deleted; this many of
# the newest are kept per VM (the drills' runbook and the postgresql role, via the inventory).
REPLACED_GENERATIONS = 2
# pgBackRest's TLS server, on the backup repository and on every database, on `interconnect`.
BACKUP_TLS_PORT = 8432
# The name the repository's certificate carries; a municipality's databases carry backup_client(id),
# a name no municipality id can take.
BACKUP_COMMON_NAME = "lgcloud-backup"

# 番号連携: the 中間サーバー's API (on each municipality's closed segments and on lgwan, for the
# broker) and the broker's (情報提供ネットワークシステム, on lgwan, for the 中間サーバー only).
CHUKAN_PORT = 8600
# Each municipality's tenant of the 中間サーバー: a database of its own cluster, and the role the
# 中間サーバー connects as.
CHUKAN_DATABASE = "chukan"
CHUKAN_ROLE = "chukan"
# The databases' PostgreSQL (the postgresql role's postgresql_port; the 中間サーバー connects to it).
POSTGRESQL_PORT = 5432
BROKER_PORT = 8700
# The site of the national systems, outside the center and the backup site (the lab runs it on the
# center's engine).
NATIONAL = "national"

# マイ・ポータル, on `internet`: HTTPS with the 個人番号カード's certificate, under this name; its
# metrics on mgmt; and the one read API it may call, the broker's, on the broker's internet address.
PORTAL_PORT = 443
PORTAL_NAME = "myna.portal.test"
PORTAL_METRICS_PORT = 9120
PORTAL_API_PORT = 8610

# The labels every container and network of the lab carries, in this order.
LABELS = ("lgcloud.stack", "lgcloud.site", "lgcloud.municipality", "lgcloud.role", "lgcloud.name")
STACK_LABEL, SITE_LABEL, MUNICIPALITY_LABEL, ROLE_LABEL, NAME_LABEL = LABELS
# On every VM: the fingerprint of the SSH key it trusts, so that `up` can tell its stack's VMs from
# ones another checkout made with another key.
KEY_LABEL = "lgcloud.key"


def backup_client(municipality_id: str) -> str:
    """The name a municipality's databases carry in their backup certificates: the repository
    admits it to that municipality's backups only (and never mistakes it for its own).

    >>> backup_client("a-city")
    'municipality-a-city'
    """
    return f"municipality-{municipality_id}"


def _resource(stack: str, name: str) -> str:
    return f"lgcloud-{stack}-{name}"


def vm_resource(stack: str, vm: str) -> str:
    """The container that stands in for VM `vm` of `stack`."""
    return _resource(stack, vm)


def segment_resource(stack: str, segment: str) -> str:
    """The Docker network of segment `segment` of `stack`."""
    return _resource(stack, segment)


def volume_resource(stack: str, vm: str) -> str:
    """The Docker volume holding VM `vm`'s data (its database cluster, its time series)."""
    return _resource(stack, f"{vm}-data")


def lab_name(stack: str, resource: str) -> str:
    """The VM or segment a container or network of `stack` stands for (the inverse of
    ``vm_resource`` and ``segment_resource``)."""
    return resource.removeprefix(_resource(stack, ""))


def labels(stack: str, site: str, municipality: str, role: str, name: str) -> dict[str, str]:
    """The labels of one container or network; `municipality` is a code or ``SHARED``."""
    return dict(zip(LABELS, (stack, site, municipality, role, name)))


def endpoint_or_default(endpoint: str) -> str | None:
    """A site's Docker endpoint for the client: None for the local engine (the client's default)."""
    return None if endpoint == LOCAL_ENDPOINT else endpoint


def identifier(municipality: str) -> str:
    """A municipality id where `-` cannot stand (Ansible groups, SQL names, HAProxy backends)."""
    return municipality.replace("-", "_")


def replica_slot(municipality: str) -> str:
    """The physical slot on a primary, and the application_name of its standby."""
    return f"{identifier(municipality)}_replica"


def service_url(system: str, municipality: str) -> str:
    """What an office asks for: the service by name, through the gateway."""
    return f"https://{system}.{municipality}.{SERVICE_DOMAIN}"


class _Municipality(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def code(self) -> str: ...


def municipality_ids(municipalities: Iterable[_Municipality]) -> dict[str, str]:
    """地方公共団体コード -> id, with the shared base under its own name (what labels and metrics use)."""
    return {SHARED: SHARED, **{m.code: m.id for m in municipalities}}
