"""Translate registered ``pulumi_docker`` inputs into Docker Engine API calls.

Only the inputs listed here are understood; anything else stops the run with the resource
type and the input named, so the engine never silently drops what an operator declared.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import OperatorError

__all__ = [
    "ContainerSpec",
    "Mount",
    "NetworkSpec",
    "Unsupported",
    "VolumeSpec",
    "container_spec",
    "network_spec",
    "volume_spec",
]

NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
CONTAINER = "docker:index/container:Container"
PROVIDER = "pulumi:providers:docker"

# Inputs the translation ignores on purpose: the engine's own naming of resources.
_IGNORED = {"__defaults"}


class Unsupported(OperatorError):
    """A resource type or input the embedded engine cannot realise."""

    def __init__(self, typ: str, name: str, what: str) -> None:
        super().__init__(
            f"{typ} {name!r}: {what} is not supported by the embedded engine; "
            "remove it from the program or run this stack with the Pulumi CLI"
        )


def _check(typ: str, name: str, inputs: dict, known: set[str]) -> None:
    for key, value in inputs.items():
        if key not in known | _IGNORED and value not in (None, [], {}):
            raise Unsupported(typ, name, f"input {key!r}")


def _digest(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _labels(items: list[dict] | None) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items or []}


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    driver: str
    internal: bool
    subnet: str | None
    gateway: str | None
    options: dict[str, str]
    labels: dict[str, str]

    @property
    def digest(self) -> str:
        return _digest(self.__dict__)


def network_spec(name: str, inputs: dict) -> NetworkSpec:
    _check(NETWORK, name, inputs, {"name", "driver", "internal", "ipamConfigs", "labels", "options"})
    ipam = inputs.get("ipamConfigs") or [{}]
    if len(ipam) > 1:
        raise Unsupported(NETWORK, name, "more than one ipamConfigs entry")
    for key in ipam[0]:
        if key not in ("subnet", "gateway"):
            raise Unsupported(NETWORK, name, f"input 'ipamConfigs[0].{key}'")
    return NetworkSpec(
        name=inputs.get("name") or name,
        driver=inputs.get("driver") or "bridge",
        internal=bool(inputs.get("internal")),
        subnet=ipam[0].get("subnet"),
        gateway=ipam[0].get("gateway"),
        options=dict(inputs.get("options") or {}),
        labels=_labels(inputs.get("labels")),
    )


@dataclass(frozen=True)
class Attachment:
    network: str
    ipv4_address: str | None
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Upload:
    path: str
    content: str
    mode: int


@dataclass(frozen=True)
class Mount:
    """A named volume mounted into a container."""

    volume: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    hostname: str | None
    labels: dict[str, str]
    env: tuple[str, ...]
    command: tuple[str, ...] | None
    nano_cpus: int | None
    mem_limit_mb: int | None
    cap_add: tuple[str, ...]
    restart: str
    attachments: tuple[Attachment, ...]
    uploads: tuple[Upload, ...] = field(default=())
    mounts: tuple[Mount, ...] = field(default=())

    def digest(self, image_id: str) -> str:
        """Changes when anything declared changes, including the image behind the tag. A container
        without volumes digests as it did before volumes were understood, so none is replaced for it."""
        declared = {k: v for k, v in self.__dict__.items() if not (k == "mounts" and not v)}
        return _digest({**declared, "image_id": image_id})


_CONTAINER_INPUTS = {
    "name",
    "image",
    "hostname",
    "labels",
    "envs",
    "command",
    "cpus",
    "memory",
    "capabilities",
    "restart",
    "networksAdvanced",
    "uploads",
    "mustRun",
    "start",
    "volumes",
}


def container_spec(name: str, inputs: dict) -> ContainerSpec:
    _check(CONTAINER, name, inputs, _CONTAINER_INPUTS)
    if inputs.get("mustRun") is False or inputs.get("start") is False:
        raise Unsupported(CONTAINER, name, "a container that is not started (mustRun/start false)")
    caps = inputs.get("capabilities") or {}
    if caps.get("drops"):
        raise Unsupported(CONTAINER, name, "input 'capabilities.drops'")
    attachments = []
    for net in inputs.get("networksAdvanced") or []:
        _check(CONTAINER, name, net, {"name", "ipv4Address", "aliases"})
        attachments.append(Attachment(net["name"], net.get("ipv4Address"), tuple(net.get("aliases") or ())))
    uploads = []
    for up in inputs.get("uploads") or []:
        _check(CONTAINER, name, up, {"file", "content", "permissions", "executable"})
        if "content" not in up:
            raise Unsupported(CONTAINER, name, "an upload without 'content'")
        mode = int(up.get("permissions") or ("0755" if up.get("executable") else "0644"), 8)
        uploads.append(Upload(up["file"], up["content"], mode))
    mounts = []
    for volume in inputs.get("volumes") or []:
        _check(CONTAINER, name, volume, {"volumeName", "containerPath", "readOnly"})
        if not volume.get("volumeName") or not volume.get("containerPath"):
            raise Unsupported(CONTAINER, name, "a volume without volumeName and containerPath (host paths)")
        mounts.append(Mount(volume["volumeName"], volume["containerPath"], bool(volume.get("readOnly"))))
    cpus = inputs.get("cpus")
    return ContainerSpec(
        name=inputs.get("name") or name,
        image=inputs["image"],
        hostname=inputs.get("hostname"),
        labels=_labels(inputs.get("labels")),
        env=tuple(inputs.get("envs") or ()),
        command=tuple(inputs["command"]) if inputs.get("command") else None,
        nano_cpus=int(float(cpus) * 1e9) if cpus else None,
        mem_limit_mb=inputs.get("memory"),
        cap_add=tuple(caps.get("adds") or ()),
        restart=inputs.get("restart") or "no",
        attachments=tuple(attachments),
        uploads=tuple(uploads),
        mounts=tuple(mounts),
    )


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    driver: str
    options: dict[str, str]
    labels: dict[str, str]

    @property
    def digest(self) -> str:
        """What a volume is made with; its labels only describe it."""
        return _digest({"name": self.name, "driver": self.driver, "options": self.options})


def volume_spec(name: str, inputs: dict) -> VolumeSpec:
    _check(VOLUME, name, inputs, {"name", "driver", "driverOpts", "labels"})
    return VolumeSpec(
        name=inputs.get("name") or name,
        driver=inputs.get("driver") or "local",
        options=dict(inputs.get("driverOpts") or {}),
        labels=_labels(inputs.get("labels")),
    )
