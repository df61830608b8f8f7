"""Draw a stack's topology with graphviz: sites as clusters, segments as buses, VMs on them.

>>> render(load_stack("dev"), Path("docs/topology.png"))   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import graphviz

from .config import StackConfig
from .topology import plan

__all__ = ["render"]

_ROLE_COLOURS = {"gateway": "#f4d35e", "app": "#a8dadc", "app-standby": "#a8dadc", "db": "#e5989b",
                 "db-replica": "#e5989b", "terminal": "#d8e2dc", "monitor": "#b5e48c", "bastion": "#b5e48c"}
_PLACES = {"center": "共同利用センタ (center)", "backup": "遠隔地 backup site", "office": "municipal offices"}


def render(cfg: StackConfig, out: Path) -> Path:
    """Write the topology of `cfg` to `out` (.png or .svg) and return its path."""
    topology = plan(cfg)
    names = {m.code: m.name for m in cfg.municipalities}
    graph = graphviz.Graph("lgcloud", engine="dot", format=out.suffix.lstrip(".") or "png")
    graph.attr(rankdir="LR", fontname="IPAPGothic", label=f"lgcloud stack {cfg.stack}", labelloc="t",
               nodesep="0.15", ranksep="1.2")
    graph.attr("node", fontname="IPAPGothic", fontsize="10")
    for place, title in _PLACES.items():
        with graph.subgraph(name=f"cluster_{place}") as cluster:
            cluster.attr(label=title, style="rounded", color="#888888")
            for vm in (v for v in topology.vms if v.site == place):
                owner = names.get(vm.municipality, "共通基盤")
                cluster.node(f"vm_{vm.name}", f"{vm.name}\n{owner}", shape="box", style="filled,rounded",
                             fillcolor=_ROLE_COLOURS.get(vm.role, "white"))
    for segment in topology.segments:
        style = "filled" if segment.internal else "filled,dashed"
        graph.node(f"seg_{segment.key}", f"{segment.key}\n{segment.cidr}", shape="ellipse", style=style,
                   fillcolor="#eeeeee")
    for vm in topology.vms:
        for key, address in vm.addresses.items():
            if key != "mgmt":  # every VM is on mgmt; drawing those edges hides everything else
                graph.edge(f"vm_{vm.name}", f"seg_{key}", label=address.rsplit(".", 1)[1], fontsize="8")
    out.parent.mkdir(parents=True, exist_ok=True)
    rendered = graph.render(outfile=str(out), cleanup=True)
    return Path(rendered)
