"""SharedBase: the 共通基盤 every municipality uses: gateways, 中間サーバー, monitor, bastion; and the broker."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from ..model.naming import SHARED
from .site import Site, engine_site
from .vm import VmArgs, vm

__all__ = ["SharedBase", "SharedBaseArgs"]


@dataclass(frozen=True)
class SharedBaseArgs:
    vm: VmArgs
    sites: dict[str, Site]
    networks: dict[str, docker.Network]  # every segment of the stack, by key


class SharedBase(pulumi.ComponentResource):
    """The LGWAN-ASP gateway (and its standby at the backup site), the monitor and the bastion."""

    vms: dict[str, docker.Container]

    def __init__(self, name: str, args: SharedBaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("lgcloud:shared:SharedBase", name, None, opts)
        self.vms = {
            plan.name: vm(plan, args.vm, args.networks, self, args.sites[engine_site(plan.site)].provider)
            for plan in args.vm.topology.vms
            if plan.municipality == SHARED
        }
        self.register_outputs({"vms": list(self.vms)})
