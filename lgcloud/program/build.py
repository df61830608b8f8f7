"""The Pulumi program of a stack: sites, segments, municipalities and the shared base.

``stacks/__main__.py`` calls :func:`build`; the embedded engine runs that same file.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from ..model.naming import SHARED
from ..model.schema import StackConfig
from ..model.topology import VmPlan, plan
from ..state.keys import ensure_keypair
from ..state.restores import active_restores
from .municipality import Municipality, MunicipalityArgs
from .shared_base import SharedBase, SharedBaseArgs
from .site import Site, SiteArgs
from .vm import VmArgs

__all__ = ["build"]


def _vm_output(vm: VmPlan, container: docker.Container) -> pulumi.Output:
    """What the stack reports of a VM: its identity, plus the addresses the engine gave it."""
    return pulumi.Output.all(container.id, container.network_datas).apply(
        lambda values: {
            "id": values[0],
            "site": vm.site,
            "municipality": vm.municipality,
            "role": vm.role,
            "addresses": {d["network_name"]: d["ip_address"] for d in values[1] or []},
        }
    )


def build(cfg: StackConfig) -> None:
    """Declare every resource of the stack and export its VMs and segments."""
    # A restore VM is part of the stack while an operator inspects it (`lgcloud restore`).
    topology = plan(cfg).with_restores(active_restores(cfg.stack))
    sites = {
        name: Site(
            name,
            SiteArgs(
                cfg.stack,
                spec.endpoint,
                tuple(s for s in topology.segments if s.site == name and s.municipality == SHARED),
            ),
        )
        for name, spec in cfg.sites.items()
    }
    keys = ensure_keypair(cfg.stack)
    vm_args = VmArgs(cfg.stack, cfg.image, keys.public_text, topology)
    municipalities = [Municipality(m.id, MunicipalityArgs(m, vm_args, sites)) for m in cfg.municipalities]

    networks = {key: seg.network for site in sites.values() for key, seg in site.segments.items()}
    for m, component in zip(cfg.municipalities, municipalities):
        networks.update({f"{m.id}-{site}": seg.network for site, seg in component.segments.items()})
    shared = SharedBase("shared", SharedBaseArgs(vm_args, sites, networks))

    containers = {**shared.vms}
    for m, component in zip(cfg.municipalities, municipalities):
        containers.update({f"{m.id}-{role}": c for role, c in component.vms.items()})
    pulumi.export("vms", {vm.name: _vm_output(vm, containers[vm.name]) for vm in topology.vms})
    pulumi.export("segments", {s.key: str(s.cidr) for s in topology.segments})
    pulumi.export("ssh", {"user": "root", "key": str(keys.private)})
