"""Municipality: one municipality's closed segments and VMs at both sites and its office."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from ..model.schema import SITES
from ..model.schema import Municipality as MunicipalityConfig
from .segment import Segment, SegmentArgs
from .site import Site, engine_site
from .vm import VmArgs, vm

__all__ = ["Municipality", "MunicipalityArgs"]


@dataclass(frozen=True)
class MunicipalityArgs:
    municipality: MunicipalityConfig
    vm: VmArgs
    sites: dict[str, Site]


class Municipality(pulumi.ComponentResource):
    """App and DB at the center, their standby and replica at the backup site, a terminal at the office."""

    segments: dict[str, Segment]
    vms: dict[str, docker.Container]

    def __init__(self, name: str, args: MunicipalityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("lgcloud:municipality:Municipality", name, None, opts)
        m, topology = args.municipality, args.vm.topology
        self.segments = {
            site: Segment(
                f"{name}-{site}",
                SegmentArgs(args.vm.stack, topology.segment(f"{m.id}-{site}")),
                pulumi.ResourceOptions(parent=self, providers=[args.sites[site].provider]),
            )
            for site in SITES
        }
        networks = {key: seg.network for site in args.sites.values() for key, seg in site.segments.items()}
        networks.update({f"{m.id}-{site}": seg.network for site, seg in self.segments.items()})
        self.vms = {}
        # The replica is made before its primary: a change to both replaces the replica first, and
        # the engine leaves the primary for the next run (lgcloud.engine.realise, `partners`).
        own = sorted((v for v in topology.vms if v.municipality == m.code), key=lambda v: v.role != "db-replica")
        for plan in own:
            site = args.sites[engine_site(plan.site)]
            after = [self.vms["db-replica"]] if plan.role == "db" else []
            self.vms[plan.role] = vm(plan, args.vm, networks, self, site.provider, after)
        self.register_outputs({"code": m.code, "vms": list(self.vms)})
