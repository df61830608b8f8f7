"""Site: a data center (共同利用センタ or the backup site) and the Docker Engine it runs on."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from ..model.topology import SegmentPlan
from .segment import Segment, SegmentArgs

__all__ = ["Site", "SiteArgs", "engine_site"]


def engine_site(site: str) -> str:
    """The site whose engine runs a VM: an office terminal and the national systems, outside both
    sites, run on the center's."""
    return "backup" if site == "backup" else "center"


@dataclass(frozen=True)
class SiteArgs:
    stack: str
    endpoint: str
    segments: tuple[SegmentPlan, ...] = ()  # the stack-wide segments this site hosts


class Site(pulumi.ComponentResource):
    """A site; its VMs and segments are created through its own Docker provider."""

    provider: docker.Provider
    segments: dict[str, Segment]

    def __init__(self, name: str, args: SiteArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("lgcloud:site:Site", name, None, opts)
        self.provider = docker.Provider(f"{name}-engine", host=args.endpoint, opts=pulumi.ResourceOptions(parent=self))
        self.segments = {
            plan.key: Segment(
                f"{name}-{plan.key}",
                SegmentArgs(args.stack, plan),
                pulumi.ResourceOptions(parent=self, providers=[self.provider]),
            )
            for plan in args.segments
        }
        self.register_outputs({"endpoint": args.endpoint, "segments": list(self.segments)})
