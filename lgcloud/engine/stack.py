"""What a stack holds on its engines: listing it, removing it, checking it against others."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

import docker

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..model.config import NAMESPACE, Problem
from ..model.naming import (
    KEY_LABEL,
    MUNICIPALITY_LABEL,
    NAME_LABEL,
    ROLE_LABEL,
    SITE_LABEL,
    STACK_LABEL,
    endpoint_or_default,
    lab_name,
)
from ..model.schema import StackConfig
from ..model.topology import plan
from ..state.directory import state_dir
from ..state.keys import ensure_keypair, fingerprint, has_keypair
from .realise import RESOURCE_LABEL, Change, connect

__all__ = [
    "SegmentState",
    "VmState",
    "destroy",
    "endpoints",
    "engine_conflicts",
    "inventory",
    "refuse_unowned",
    "running_vms",
]


def endpoints(cfg: StackConfig) -> list[str | None]:
    """The distinct Docker endpoints of the stack's sites (None: the local default)."""
    found = []
    for site in cfg.sites.values():
        endpoint = endpoint_or_default(site.endpoint)
        if endpoint not in found:
            found.append(endpoint)
    return found


def _stack_filter(stack: str) -> dict[str, list[str]]:
    return {"label": [f"{STACK_LABEL}={stack}", RESOURCE_LABEL]}


def destroy(
    cfg: StackConfig, on_change: Callable[[Change], None] = lambda change: None, delete_data: bool = False
) -> list[Change]:
    """Remove every container and network the engine made for this stack, and nothing else. Its
    data volumes are kept (the next `up` finds them again) unless `delete_data`."""
    changes: list[Change] = []
    left: list[str] = []  # networks the engine would not remove

    def done(action: str, kind: str, name: str, started: float) -> None:
        changes.append(Change(action, kind, name, time.monotonic() - started))
        on_change(changes[-1])

    for endpoint in endpoints(cfg):
        api = connect(endpoint).api
        for container in api.containers(all=True, filters=_stack_filter(cfg.stack)):
            started = time.monotonic()
            api.remove_container(container["Id"], force=True)
            done("delete", "container", container["Names"][0].lstrip("/"), started)
        for network in api.networks(filters=_stack_filter(cfg.stack)):
            started = time.monotonic()
            if _remove_network(api, network["Id"]):
                done("delete", "network", network["Name"], started)
            else:
                left.append(network["Name"])
        for volume in api.volumes(filters=_stack_filter(cfg.stack)).get("Volumes") or []:
            started = time.monotonic()
            if delete_data:
                api.remove_volume(volume["Name"])
            done("delete" if delete_data else "kept", "volume", volume["Name"], started)
    if left:
        raise OperatorError(
            f"the engine still holds ports on {', '.join(left)} after every VM of stack {cfg.stack} was removed",
            "restart the Docker Engine (it drops ports it lost track of: `pkill dockerd`, then `make host` starts it), "
            "then run `lgcloud down` again; "
            "every VM is removed" + (", and its data deleted" if delete_data else ", its data volumes kept"),
        )
    return changes


# A network a VM left a moment ago may still hold its port while the engine tears the VM down.
_NETWORK_RETRIES = (0.5, 1.0, 2.0, 4.0)


def _remove_network(api: docker.APIClient, network: str) -> bool:
    """Remove a network of the stack; False when the engine still holds a port on it (after the
    pauses above, and after disconnecting by force any container it names)."""
    for pause in (*_NETWORK_RETRIES, None):
        try:
            api.remove_network(network)
            return True
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc):
                raise
        if pause is None:
            break
        for container in api.inspect_network(network).get("Containers") or {}:
            api.disconnect_container_from_network(container, network, force=True)
        time.sleep(pause)
    return False


def refuse_unowned(cfg: StackConfig) -> None:
    """Refuse (exit 2) when the engines hold this stack's VMs or data volumes but its state
    directory has no key: they were made from another checkout, or the directory was lost. Going on
    would replace every VM with ones trusting a new key, beside data set up with lost passwords."""
    if has_keypair(cfg.stack):
        ours = fingerprint(ensure_keypair(cfg.stack).public_text)
        for endpoint in endpoints(cfg):
            for c in connect(endpoint).api.containers(all=True, filters=_stack_filter(cfg.stack)):
                theirs = (c.get("Labels") or {}).get(KEY_LABEL)
                if theirs and theirs != ours:
                    directory = state_dir(cfg.stack)
                    raise OperatorError(
                        f"stack {cfg.stack}'s VM {c['Names'][0].lstrip('/')} trusts another SSH key ({theirs}) than "
                        f"{directory}/id_ed25519 ({ours}): another checkout made this lab",
                        f"run lgcloud from that checkout, or copy its {directory} here; to start afresh instead, "
                        f"`lgcloud down --stack {cfg.stack} --delete-data` removes the lab and deletes its data",
                        EXIT_BAD_INPUT,
                    )
        return
    containers, volumes = 0, 0
    for endpoint in endpoints(cfg):
        api = connect(endpoint).api
        containers += len(api.containers(all=True, filters=_stack_filter(cfg.stack)))
        volumes += len(api.volumes(filters=_stack_filter(cfg.stack)).get("Volumes") or [])
    if containers or volumes:
        directory = state_dir(cfg.stack)
        raise OperatorError(
            f"stack {cfg.stack} already has {containers} VMs and {volumes} data volumes on its engines, but "
            f"{directory} holds no key for them: they were made from another checkout, or that directory was lost",
            f"copy {directory} back from the checkout that made the lab; to start afresh instead, "
            f"`lgcloud down --stack {cfg.stack} --delete-data` removes the lab and deletes its data",
            EXIT_BAD_INPUT,
        )


@dataclass(frozen=True)
class VmState:
    name: str
    container: str
    site: str
    municipality: str
    role: str
    state: str
    addresses: dict[str, str]
    id: str = ""  # the container's ID: a VM made anew has another


@dataclass(frozen=True)
class SegmentState:
    name: str
    subnet: str | None
    internal: bool


def inventory(cfg: StackConfig) -> tuple[list[VmState], list[SegmentState]]:
    """The stack's VMs and segments as the engines report them now."""
    vms: list[VmState] = []
    segments: list[SegmentState] = []
    for endpoint in endpoints(cfg):
        api = connect(endpoint).api
        for c in api.containers(all=True, filters=_stack_filter(cfg.stack)):
            labels = c["Labels"]
            nets = c.get("NetworkSettings", {}).get("Networks") or {}
            vms.append(
                VmState(
                    name=labels.get(NAME_LABEL, ""),
                    container=c["Names"][0].lstrip("/"),
                    site=labels.get(SITE_LABEL, ""),
                    municipality=labels.get(MUNICIPALITY_LABEL, ""),
                    role=labels.get(ROLE_LABEL, ""),
                    state=c["State"],
                    addresses={lab_name(cfg.stack, net): v.get("IPAddress", "") for net, v in nets.items()},
                    id=c["Id"],
                )
            )
        for n in api.networks(filters=_stack_filter(cfg.stack)):
            config = (n.get("IPAM") or {}).get("Config") or [{}]
            segments.append(SegmentState(n["Name"], config[0].get("Subnet"), bool(n.get("Internal", False))))
    return sorted(vms, key=lambda v: v.name), sorted(segments, key=lambda s: s.name)


def running_vms(cfg: StackConfig) -> set[str]:
    """Names of the stack's VMs that are running now."""
    return set(running_containers(cfg))


def running_containers(cfg: StackConfig) -> dict[str, str]:
    """The stack's VMs that are running now, each with its container's ID."""
    return {vm.name: vm.id for vm in inventory(cfg)[0] if vm.state == "running"}


def _segment_path(cfg: StackConfig, key: str) -> str:
    for i, m in enumerate(cfg.municipalities):
        for site in m.segments:
            if key == f"{m.id}-{site}":
                return f"{NAMESPACE}:municipalities[{i}].segments.{site}"
    return f"{NAMESPACE}:segments.{key}"


def engine_conflicts(cfg: StackConfig) -> list[Problem]:
    """Segments of `cfg` that overlap a network already on the engine and not of this stack."""
    problems = []
    for endpoint in endpoints(cfg):
        api = connect(endpoint).api
        taken = []
        for n in api.networks():
            if (n.get("Labels") or {}).get(STACK_LABEL) == cfg.stack:
                continue
            for pool in (n.get("IPAM") or {}).get("Config") or []:
                if pool.get("Subnet") and ":" not in pool["Subnet"]:
                    taken.append((n["Name"], ipaddress.IPv4Network(pool["Subnet"])))
        for segment in plan(cfg).segments:
            for name, subnet in taken:
                if segment.cidr.overlaps(subnet):
                    problems.append(
                        Problem(
                            _segment_path(cfg, segment.key),
                            str(segment.cidr),
                            f"overlaps network {name} ({subnet}) already on the engine; "
                            "pick a free range or bring that stack down",
                        )
                    )
    return problems
