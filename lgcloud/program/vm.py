"""A VM: a container from the golden image, standing in for a virtual machine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from ..model.naming import EXPORTER_PORT, KEY_LABEL, labels, vm_resource, volume_resource
from ..model.topology import Topology, VmPlan
from ..state.keys import fingerprint

__all__ = ["VmArgs", "ingress_policy", "vm"]


@dataclass(frozen=True)
class VmArgs:
    stack: str
    image: str
    ssh_public_key: str
    topology: Topology


def ingress_policy(plan: VmPlan, topology: Topology) -> str:
    # vm-init turns this into a host firewall: "<cidr>=<source>,<source>;..."
    return ";".join(
        f"{topology.segment(key).cidr}={','.join(sources)}" for key, sources in sorted(plan.ingress.items())
    )


def host_policy(plan: VmPlan, topology: Topology) -> tuple[str, str]:
    """The host's end of each of the VM's segments, none of which the VM may open a connection
    to; and what it may open there anyway (the monitor: the lgcloud exporter on mgmt)."""
    ends = sorted({str(topology.segment(key).cidr.network_address + 1) for key in plan.addresses})
    allowed = f"{topology.controller}:{EXPORTER_PORT}" if plan.role == "monitor" else ""
    return ",".join(ends), allowed


def vm(
    plan: VmPlan,
    args: VmArgs,
    networks: dict[str, docker.Network],
    parent: pulumi.Resource,
    provider: docker.Provider,
    after: Sequence[pulumi.Resource] = (),
) -> docker.Container:
    """Create the container for `plan`, attached to its segments with fixed addresses, and its
    data volume when it holds data (the container can be replaced; the volume stays)."""
    volumes = []
    if plan.data:
        volume = docker.Volume(
            f"{plan.name}-data",
            name=volume_resource(args.stack, plan.name),
            labels=[
                docker.VolumeLabelArgs(label=k, value=v)
                for k, v in labels(args.stack, plan.site, plan.municipality, "data", plan.name).items()
            ],
            # `pulumi destroy` and a replacement leave the data where it is, as `lgcloud down` does.
            opts=pulumi.ResourceOptions(parent=parent, provider=provider, retain_on_delete=True),
        )
        volumes.append(docker.ContainerVolumeArgs(volume_name=volume.name, container_path=plan.data))
    return docker.Container(
        f"{plan.name}-vm",
        name=vm_resource(args.stack, plan.name),
        hostname=plan.name,
        image=args.image,
        labels=[
            docker.ContainerLabelArgs(label=k, value=v)
            for k, v in {
                **labels(args.stack, plan.site, plan.municipality, plan.role, plan.name),
                KEY_LABEL: fingerprint(args.ssh_public_key),
            }.items()
        ],
        cpus=f"{plan.allocation.vcpus:g}",
        memory=plan.allocation.memory_mb,
        networks_advanced=[
            docker.ContainerNetworksAdvancedArgs(name=networks[key].name, ipv4_address=address, aliases=[plan.name])
            for key, address in plan.addresses.items()
        ],
        envs=[
            f"LGCLOUD_INGRESS={ingress_policy(plan, args.topology)}",
            *(
                f"{k}={v}"
                for k, v in zip(("LGCLOUD_HOST", "LGCLOUD_HOST_ALLOW"), host_policy(plan, args.topology))
                if v
            ),
            # Only a gateway keeps NET_ADMIN and NET_RAW past boot: it moves service addresses.
            *(["LGCLOUD_NET_ADMIN=keep"] if plan.role == "gateway" else []),
        ],
        # vm-init places the firewall with NET_ADMIN, then drops it (and NET_RAW) from every process
        # a tenant can reach; the hypervisor's `docker exec` keeps it (lgcloud.ops.lab.Lab.plug).
        capabilities=docker.ContainerCapabilitiesArgs(adds=["NET_ADMIN"]),
        uploads=[
            docker.ContainerUploadArgs(
                file="/etc/lgcloud/authorized_keys", content=args.ssh_public_key + "\n", permissions="0644"
            )
        ],
        volumes=volumes,
        restart="no",  # a stopped VM stays stopped: drills decide when it comes back
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=list(after)),
    )
