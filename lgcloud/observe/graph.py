"""Draw a stack's declared topology with graphviz: sites as clusters, segments as buses, VMs on them.

render(load_stack("dev"), Path("docs/topology.png"))   # what `lgcloud graph` draws
"""

from __future__ import annotations

from pathlib import Path

import graphviz

from ..model.naming import NATIONAL, SHARED
from ..model.schema import StackConfig
from ..model.topology import SegmentPlan, plan

__all__ = ["render"]

_ROLE_COLOURS = {
    "gateway": "#f4d35e",
    "app": "#a8dadc",
    "app-standby": "#a8dadc",
    "db": "#e5989b",
    "db-replica": "#e5989b",
    "terminal": "#d8e2dc",
    "monitor": "#b5e48c",
    "bastion": "#b5e48c",
    "chukan": "#cdb4db",
    "broker": "#cdb4db",
}
_PLACES = {
    "center": "共同利用センタ (center)",
    "backup": "遠隔地 backup site",
    "office": "municipal offices",
    "national": "national systems (情報提供ネットワークシステム)",
}


# Left to right as traffic flows: offices, WANs, gateways, closed segments, servers, interconnect.
_COLUMNS = {"terminal": 0, "wan": 1, "gateway": 2, "closed": 3, "server": 4, "link": 5}


def _column(kind: str) -> int:
    return _COLUMNS.get(kind, _COLUMNS["server"])


def render(cfg: StackConfig, out: Path) -> Path:
    """Write the topology of `cfg` to `out` (.png or .svg) and return its path."""
    topology = plan(cfg)
    names = {m.code: m.name for m in cfg.municipalities}
    graph = graphviz.Graph("lgcloud", engine="dot", format=out.suffix.lstrip(".") or "png")
    graph.attr(
        rankdir="LR",
        fontname="IPAPGothic",
        label=f"lgcloud stack {cfg.stack} (mgmt, which every VM joins, is not drawn)",
        labelloc="t",
        nodesep="0.12",
        ranksep="0.9",
        newrank="true",
    )
    graph.attr("node", fontname="IPAPGothic", fontsize="10")
    graph.attr("edge", fontname="IPAPGothic", fontsize="8", color="#666666")
    column: dict[str, int] = {}

    def segment_node(container: graphviz.Graph, segment: SegmentPlan) -> None:
        style = "filled" if segment.internal else "filled,dashed"
        container.node(
            f"seg_{segment.key}", f"{segment.key}\n{segment.cidr}", shape="ellipse", style=style, fillcolor="#eeeeee"
        )

    for place, title in _PLACES.items():
        with graph.subgraph(name=f"cluster_{place}") as cluster:
            cluster.attr(label=title, style="rounded", color="#888888")
            for vm in (v for v in topology.vms if v.site == place):
                owner = "国" if vm.site == NATIONAL else names.get(vm.municipality, "共通基盤")
                cluster.node(
                    f"vm_{vm.name}",
                    f"{vm.name}\n{owner}",
                    shape="box",
                    style="filled,rounded",
                    fillcolor=_ROLE_COLOURS.get(vm.role, "white"),
                )
                kind = "terminal" if vm.role == "terminal" else "gateway" if vm.role == "gateway" else "server"
                column[f"vm_{vm.name}"] = _column(kind)
            for segment in (s for s in topology.segments if s.site == place and s.municipality != SHARED):
                segment_node(cluster, segment)
                column[f"seg_{segment.key}"] = _column("closed")
    for segment in (s for s in topology.segments if s.municipality == SHARED and s.key != "mgmt"):
        segment_node(graph, segment)
        column[f"seg_{segment.key}"] = _column("link" if segment.key in ("interconnect", "internet") else "wan")
    for vm in topology.vms:
        for key, address in vm.addresses.items():
            if key == "mgmt":
                continue
            ends = sorted([f"vm_{vm.name}", f"seg_{key}"], key=column.__getitem__)
            graph.edge(*ends, label=f".{address.rsplit('.', 1)[1]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(graph.render(outfile=str(out), cleanup=True))
