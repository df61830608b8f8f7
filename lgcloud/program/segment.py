"""Segment: one network segment of the lab, a Docker network."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from ..model.naming import labels, segment_resource
from ..model.topology import SegmentPlan

__all__ = ["Segment", "SegmentArgs"]


@dataclass(frozen=True)
class SegmentArgs:
    stack: str
    plan: SegmentPlan


class Segment(pulumi.ComponentResource):
    """A segment; `internal` ones have no route out of the lab."""

    network: docker.Network

    def __init__(self, name: str, args: SegmentArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("lgcloud:segment:Segment", name, None, opts)
        plan = args.plan
        self.network = docker.Network(
            f"{name}-network",
            name=segment_resource(args.stack, plan.key),
            driver="bridge",
            internal=plan.internal,
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=str(plan.cidr), gateway=plan.router)],
            labels=[
                docker.NetworkLabelArgs(label=k, value=v)
                for k, v in labels(args.stack, plan.site, plan.municipality, "segment", plan.key).items()
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.network.name, "cidr": str(plan.cidr)})
