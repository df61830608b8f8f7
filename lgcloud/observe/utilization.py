"""``lgcloud report utilization``: measured use against allocation and capacity, and the seed's case.

From the lab's Prometheus (recording rules over each VM's cgroup, see monitoring/rules/sla.yml):
CPU and memory of every VM and site over a window, against what they are allocated and what the
sites hold. Then the comparison the lecture makes for the 自治体クラウド: every municipality on
its own dedicated servers, each sized for its own peak, against one shared pool sized for the
peak of the sum (peaks of different municipalities do not coincide), and the cost of the center
split per municipality by allocation and by measured use (割勘). Writes an HTML report with its
PNG charts embedded, the charts beside it, and the numbers as JSON::

    lgcloud report utilization --stack dev --window 1h --out reports/
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import EXIT_BAD_INPUT, EXIT_NOT_EVALUATED, OperatorError
from ..model.naming import SHARED, municipality_ids
from ..model.schema import StackConfig, duration_seconds
from ..model.topology import plan
from .prometheus import Prometheus

__all__ = [
    "PEAK_SHARE",
    "Consolidation",
    "CostShare",
    "DedicatedServers",
    "Fleet",
    "Server",
    "SharedPool",
    "SiteUse",
    "UtilizationReport",
    "VmUse",
    "cost_split",
    "measure",
    "size_for_peak",
    "utilization",
    "write_report",
]

MIB = 1024 * 1024
GIB_MB = 1024
# A server is sized so that its peak uses at most this share of it: the usual sizing rule that
# leaves room for growth, and the reason dedicated servers idle at 25-40 % (the seed).
PEAK_SHARE = 0.7
FONT = "IPAGothic"  # fonts-ipafont-gothic (scripts/host-setup.sh): Japanese labels


@dataclass(frozen=True)
class Server:
    """Hardware sized for a peak: whole vCPUs and whole GiB."""

    vcpus: int
    memory_mb: int


def size_for_peak(peak_vcpus: float, peak_memory_mb: float, peak_share: float = PEAK_SHARE) -> Server:
    """The smallest server whose peak stays within `peak_share` of it.

    >>> size_for_peak(0.5, 700)
    Server(vcpus=1, memory_mb=1024)
    """
    vcpus = max(1, math.ceil(peak_vcpus / peak_share - 1e-9))
    memory = max(1, math.ceil(peak_memory_mb / peak_share / GIB_MB - 1e-9)) * GIB_MB
    return Server(vcpus, memory)


def utilization(used: float, capacity: float) -> float | None:
    """Share of `capacity` that `used` is; None when there is no capacity to speak of."""
    return used / capacity if capacity > 0 else None


def cost_split(weights: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Each municipality's share of the cost, CPU and memory weighing half each.

    >>> cost_split({"a": (1, 100), "b": (3, 100)})
    {'a': 0.375, 'b': 0.625}
    """
    cpu = sum(w[0] for w in weights.values())
    memory = sum(w[1] for w in weights.values())
    return {
        m: 0.5 * (c / cpu if cpu else 1 / len(weights)) + 0.5 * (b / memory if memory else 1 / len(weights))
        for m, (c, b) in weights.items()
    }


def _step(window: str, scrape_interval: str) -> str:
    """Resolution of a subquery over `window`: about 500 points, never under the scrape interval."""
    return f"{max(duration_seconds(scrape_interval), duration_seconds(window) // 500)}s"


@dataclass(frozen=True)
class VmUse:
    """One VM: what it is allocated, and what it used over the window (None: no samples)."""

    vm: str
    site: str
    role: str
    municipality: str  # id, or "shared"
    allocated_vcpus: float
    allocated_memory_mb: int
    cpu_avg_vcpus: float | None
    cpu_peak_vcpus: float | None
    memory_avg_mb: float | None
    memory_peak_mb: float | None
    samples: float | None


@dataclass(frozen=True)
class SiteUse:
    """One site: capacity, what its VMs are allocated, and what they used."""

    site: str
    capacity_vcpus: float
    capacity_memory_mb: int
    allocated_vcpus: float
    allocated_memory_mb: int
    cpu_avg_vcpus: float
    cpu_peak_vcpus: float | None
    memory_avg_mb: float
    memory_peak_mb: float | None
    cpu_utilisation: float | None
    memory_utilisation: float | None


@dataclass(frozen=True)
class DedicatedServers:
    """One municipality's app and database servers on hardware of its own, sized for its peak."""

    municipality: str
    name: str
    peak_vcpus: float | None
    peak_memory_mb: float
    server: Server
    cpu_avg_vcpus: float
    memory_avg_mb: float
    cpu_utilisation: float | None
    memory_utilisation: float | None


@dataclass(frozen=True)
class Fleet:
    """Every municipality's dedicated servers together."""

    vcpus: int
    memory_mb: int
    cpu_utilisation: float | None
    memory_utilisation: float | None


@dataclass(frozen=True)
class SharedPool:
    """One pool for every municipality, sized for the peak of the sum."""

    peak_vcpus: float | None
    peak_memory_mb: float
    server: Server
    cpu_utilisation: float | None
    memory_utilisation: float | None


@dataclass(frozen=True)
class Consolidation:
    """The seed's comparison: dedicated servers against the shared pool."""

    peak_share: float
    dedicated: list[DedicatedServers]
    dedicated_total: Fleet
    shared: SharedPool


@dataclass(frozen=True)
class CostShare:
    """A municipality's share of the center's cost (割勘), by allocation and by measured use."""

    municipality: str
    name: str
    by_allocation: float
    by_use: float


@dataclass(frozen=True)
class UtilizationReport:
    stack: str
    window: str
    at: float  # epoch seconds: the end of the window
    vms: list[VmUse]
    sites: list[SiteUse]
    consolidation: Consolidation
    cost: list[CostShare]

    def to_json(self) -> dict[str, Any]:
        """The report's one JSON form (utilization.json)."""
        return asdict(self)


def measure(cfg: StackConfig, prometheus: Prometheus, window: str, at: float | None = None) -> UtilizationReport:
    """Every figure of the report, from Prometheus."""
    at = at or time.time()
    topology = plan(cfg)
    ids = municipality_ids(cfg.municipalities)
    w, step = window, _step(window, cfg.monitoring.scrape_interval)
    cpu, memory = "vm:lgcloud_vm_cpu_usage_vcpus:rate1m", "vm:lgcloud_vm_memory_used_bytes:sum"
    workload = f'role!="terminal", municipality!="{SHARED}"'  # municipal servers; offices stay in the offices

    def by(expr: str, key: str = "vm") -> dict[str, float]:
        return {labels.get(key, ""): value for labels, value in prometheus.query(expr, at)}

    def mib(values: dict[str, float]) -> dict[str, float]:
        return {k: v / MIB for k, v in values.items()}

    cpu_avg, cpu_peak = by(f"avg_over_time({cpu}[{w}])"), by(f"max_over_time({cpu}[{w}])")
    memory_avg = mib(by(f"avg_over_time({memory}[{w}])"))
    memory_peak = mib(by(f"max_over_time({memory}[{w}])"))
    samples = by(f"count_over_time({memory}[{w}])")
    vms = [
        VmUse(
            vm.name,
            vm.site,
            vm.role,
            ids[vm.municipality],
            vm.allocation.vcpus,
            vm.allocation.memory_mb,
            cpu_avg.get(vm.name),
            cpu_peak.get(vm.name),
            memory_avg.get(vm.name),
            memory_peak.get(vm.name),
            samples.get(vm.name),
        )
        for vm in topology.vms
    ]

    sites = []
    site_peak_cpu = by(f"max_over_time(site:lgcloud_vm_cpu_usage_vcpus:sum[{w}])", "site")
    site_peak_memory = by(f"max_over_time(site:lgcloud_vm_memory_used_bytes:sum[{w}])", "site")
    for site, spec in cfg.sites.items():
        here = [v for v in vms if v.site == site]
        allocated = topology.allocated(site)
        avg_cpu = sum(v.cpu_avg_vcpus or 0 for v in here)
        avg_memory = sum(v.memory_avg_mb or 0 for v in here)
        sites.append(
            SiteUse(
                site,
                spec.capacity.vcpus,
                spec.capacity.memory_mb,
                allocated.vcpus,
                allocated.memory_mb,
                avg_cpu,
                site_peak_cpu.get(site),
                avg_memory,
                (site_peak_memory.get(site) or 0) / MIB or None,
                utilization(avg_cpu, spec.capacity.vcpus),
                utilization(avg_memory, spec.capacity.memory_mb),
            )
        )

    # The seed's comparison, over the municipal servers (app and database, both sites).
    peak_cpu = by(f"max_over_time(sum by (municipality) ({cpu}{{{workload}}})[{w}:{step}])", "municipality")
    peak_memory = by(f"max_over_time(sum by (municipality) ({memory}{{{workload}}})[{w}:{step}])", "municipality")
    pool_cpu = by(f"max_over_time(sum({cpu}{{{workload}}})[{w}:{step}])", "")
    pool_memory = by(f"max_over_time(sum({memory}{{{workload}}})[{w}:{step}])", "")
    dedicated = []
    for m in cfg.municipalities:
        own = [v for v in vms if v.municipality == m.id and v.role != "terminal"]
        server = size_for_peak(peak_cpu.get(m.id, 0), peak_memory.get(m.id, 0) / MIB)
        avg_cpu = sum(v.cpu_avg_vcpus or 0 for v in own)
        avg_memory = sum(v.memory_avg_mb or 0 for v in own)
        dedicated.append(
            DedicatedServers(
                m.id,
                m.name,
                peak_cpu.get(m.id),
                (peak_memory.get(m.id) or 0) / MIB,
                server,
                avg_cpu,
                avg_memory,
                utilization(avg_cpu, server.vcpus),
                utilization(avg_memory, server.memory_mb),
            )
        )
    pool = size_for_peak(pool_cpu.get("", 0), pool_memory.get("", 0) / MIB)
    pool_avg_cpu = sum(d.cpu_avg_vcpus for d in dedicated)
    pool_avg_memory = sum(d.memory_avg_mb for d in dedicated)
    dedicated_vcpus = sum(d.server.vcpus for d in dedicated)
    dedicated_memory = sum(d.server.memory_mb for d in dedicated)
    consolidation = Consolidation(
        PEAK_SHARE,
        dedicated,
        Fleet(
            dedicated_vcpus,
            dedicated_memory,
            utilization(pool_avg_cpu, dedicated_vcpus),
            utilization(pool_avg_memory, dedicated_memory),
        ),
        SharedPool(
            pool_cpu.get(""),
            (pool_memory.get("") or 0) / MIB,
            pool,
            utilization(pool_avg_cpu, pool.vcpus),
            utilization(pool_avg_memory, pool.memory_mb),
        ),
    )

    municipal = [v for v in vms if v.municipality != SHARED and v.role != "terminal"]
    by_allocation = cost_split(
        {
            m.id: (
                sum(v.allocated_vcpus for v in municipal if v.municipality == m.id),
                sum(v.allocated_memory_mb for v in municipal if v.municipality == m.id),
            )
            for m in cfg.municipalities
        }
    )
    by_use = cost_split({d.municipality: (d.cpu_avg_vcpus, d.memory_avg_mb) for d in dedicated})
    cost = [CostShare(m.id, m.name, by_allocation[m.id], by_use[m.id]) for m in cfg.municipalities]
    return UtilizationReport(cfg.stack, window, at, vms, sites, consolidation, cost)


def _charts(data: UtilizationReport, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    if any(f.name == FONT for f in font_manager.fontManager.ttflist):
        plt.rcParams["font.family"] = FONT
    charts: dict[str, Path] = {}

    vms = [v for v in data.vms if v.cpu_avg_vcpus is not None]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * len(vms) + 1.5), sharey=True)
    names = [v.vm for v in vms]
    for ax, (alloc, peak, avg, unit, title) in zip(
        axes,
        (
            ("allocated_vcpus", "cpu_peak_vcpus", "cpu_avg_vcpus", "vCPU", "CPU（割当・ピーク・平均）"),
            ("allocated_memory_mb", "memory_peak_mb", "memory_avg_mb", "MiB", "メモリ（割当・ピーク・平均）"),
        ),
    ):
        ax.barh(names, [getattr(v, alloc) for v in vms], color="#d9e2ef", label="割当 allocated")
        ax.barh(names, [getattr(v, peak) or 0 for v in vms], color="#7da7d9", label="ピーク peak")
        ax.barh(names, [getattr(v, avg) or 0 for v in vms], color="#1f4e8c", label="平均 average")
        ax.set_xlabel(unit)
        ax.set_title(title)
        ax.invert_yaxis()
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"VMごとの使用量 — {data.stack}, {data.window}")
    fig.tight_layout()
    charts["vms"] = out / "vms.png"
    fig.savefig(charts["vms"], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    sites = data.sites
    for ax, (cap, alloc, avg, unit, title) in zip(
        axes,
        (
            ("capacity_vcpus", "allocated_vcpus", "cpu_avg_vcpus", "vCPU", "サイトのCPU"),
            ("capacity_memory_mb", "allocated_memory_mb", "memory_avg_mb", "MiB", "サイトのメモリ"),
        ),
    ):
        x = range(len(sites))
        ax.bar([i - 0.27 for i in x], [getattr(s, cap) for s in sites], 0.27, color="#d9e2ef", label="容量 capacity")
        ax.bar(x, [getattr(s, alloc) for s in sites], 0.27, color="#7da7d9", label="割当 allocated")
        ax.bar([i + 0.27 for i in x], [getattr(s, avg) for s in sites], 0.27, color="#1f4e8c", label="使用 used")
        ax.set_xticks(
            list(x), [{"center": "共同利用センタ", "backup": "バックアップ"}.get(s.site, s.site) for s in sites]
        )
        ax.set_ylabel(unit)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    charts["sites"] = out / "sites.png"
    fig.savefig(charts["sites"], dpi=110)
    plt.close(fig)

    c = data.consolidation
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = ["団体ごとの専用サーバ\ndedicated", "共同利用（共有プール）\nshared pool"]
    axes[0].bar(labels, [c.dedicated_total.vcpus, c.shared.server.vcpus], color=["#b0b0b0", "#1f4e8c"])
    axes[0].set_ylabel("vCPU")
    axes[0].set_title("ピークに合わせた必要CPU")
    utils = [100 * (c.dedicated_total.cpu_utilisation or 0), 100 * (c.shared.cpu_utilisation or 0)]
    axes[1].bar(labels, utils, color=["#b0b0b0", "#1f4e8c"])
    axes[1].set_ylabel("%")
    axes[1].set_title("平均CPU使用率")
    for i, u in enumerate(utils):
        axes[1].annotate(f"{u:.1f} %", (i, u), ha="center", va="bottom")
    axes[1].set_ylim(0, max(utils + [1]) * 1.15)  # room for the labels above the bars
    fig.tight_layout()
    charts["consolidation"] = out / "consolidation.png"
    fig.savefig(charts["consolidation"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.4))
    cost = data.cost
    x = range(len(cost))
    ax.bar([i - 0.2 for i in x], [100 * r.by_allocation for r in cost], 0.4, color="#7da7d9", label="割当で按分")
    ax.bar([i + 0.2 for i in x], [100 * r.by_use for r in cost], 0.4, color="#1f4e8c", label="実使用で按分")
    ax.set_xticks(list(x), [f"{r.name}\n{r.municipality}" for r in cost])
    ax.set_ylabel("%")
    ax.set_title("費用の割勘（団体ごとの負担割合）")
    ax.legend(fontsize=8)
    fig.tight_layout()
    charts["cost"] = out / "cost.png"
    fig.savefig(charts["cost"], dpi=110)
    plt.close(fig)
    return charts


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _html(data: UtilizationReport, charts: dict[str, Path]) -> str:
    def table(headers: list[str], rows: list[list[object]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def image(name: str) -> str:
        encoded = base64.b64encode(charts[name].read_bytes()).decode()
        return f'<img alt="{name}" src="data:image/png;base64,{encoded}">'

    c = data.consolidation
    generated = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(data.at))
    return f"""<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>利用率レポート {html.escape(data.stack)}</title>
<style>body{{font-family:"IPAGothic",sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}td:first-child,th:first-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>利用率レポート — utilization of stack {html.escape(data.stack)}</h1>
<p>Window {html.escape(data.window)}, ending {generated}. Use is measured from each VM's cgroup (as the
hypervisor sees it) by the lgcloud exporter and Prometheus on the monitor VM.</p>
<h2>共同利用の効果 — dedicated servers versus the shared pool</h2>
<p>Each municipality's app and database servers (both sites), on dedicated hardware sized so that its own peak
uses at most {100 * c.peak_share:.0f} % of it, against one pool sized the same way for the peak of the sum.</p>
{image("consolidation")}
{
        table(
            ["", "vCPU", "memory MiB", "average CPU use", "average memory use"],
            [
                [
                    "dedicated, all municipalities",
                    c.dedicated_total.vcpus,
                    c.dedicated_total.memory_mb,
                    _pct(c.dedicated_total.cpu_utilisation),
                    _pct(c.dedicated_total.memory_utilisation),
                ],
                [
                    "shared pool",
                    c.shared.server.vcpus,
                    c.shared.server.memory_mb,
                    _pct(c.shared.cpu_utilisation),
                    _pct(c.shared.memory_utilisation),
                ],
            ],
        )
    }
{
        table(
            ["municipality", "peak vCPU", "peak MiB", "dedicated vCPU", "dedicated MiB", "CPU use", "memory use"],
            [
                [
                    f"{d.name} {d.municipality}",
                    _num(d.peak_vcpus, 3),
                    _num(d.peak_memory_mb, 0),
                    d.server.vcpus,
                    d.server.memory_mb,
                    _pct(d.cpu_utilisation),
                    _pct(d.memory_utilisation),
                ]
                for d in c.dedicated
            ],
        )
    }
<h2>割勘 — the center's cost split per municipality</h2>
{image("cost")}
{
        table(
            ["municipality", "by allocation", "by measured use"],
            [[f"{r.name} {r.municipality}", _pct(r.by_allocation), _pct(r.by_use)] for r in data.cost],
        )
    }
<h2>Sites</h2>
{image("sites")}
{
        table(
            [
                "site",
                "capacity vCPU",
                "allocated vCPU",
                "used vCPU (avg)",
                "peak",
                "CPU use",
                "capacity MiB",
                "allocated MiB",
                "used MiB (avg)",
                "memory use",
            ],
            [
                [
                    s.site,
                    _num(s.capacity_vcpus),
                    _num(s.allocated_vcpus),
                    _num(s.cpu_avg_vcpus, 3),
                    _num(s.cpu_peak_vcpus, 3),
                    _pct(s.cpu_utilisation),
                    s.capacity_memory_mb,
                    s.allocated_memory_mb,
                    _num(s.memory_avg_mb, 0),
                    _pct(s.memory_utilisation),
                ]
                for s in data.sites
            ],
        )
    }
<h2>VMs</h2>
{image("vms")}
{
        table(
            ["vm", "site", "allocated vCPU", "avg vCPU", "peak vCPU", "allocated MiB", "avg MiB", "peak MiB"],
            [
                [
                    v.vm,
                    v.site,
                    _num(v.allocated_vcpus),
                    _num(v.cpu_avg_vcpus, 3),
                    _num(v.cpu_peak_vcpus, 3),
                    v.allocated_memory_mb,
                    _num(v.memory_avg_mb, 0),
                    _num(v.memory_peak_mb, 0),
                ]
                for v in data.vms
            ],
        )
    }
</body></html>
"""


def write_report(cfg: StackConfig, prometheus: Prometheus, out: Path, window: str = "1h") -> UtilizationReport:
    """Measure, draw and write ``utilization.html`` (charts embedded), the PNGs and
    ``utilization.json`` into `out`. A bad window is refused (exit 2) before Prometheus is asked;
    Prometheus unreachable, or without any use measured, cannot be reported on (exit 3)."""
    try:
        duration_seconds(window)
    except ValueError as exc:
        raise OperatorError(f"--window: {exc}", exit_code=EXIT_BAD_INPUT) from None
    data = measure(cfg, prometheus, window)
    if not any(v.cpu_avg_vcpus is not None for v in data.vms):
        raise OperatorError(
            f"Prometheus at {prometheus.url} has no use measured in the last {window}",
            f"is the lgcloud exporter running (`lgcloud exporter --stack {cfg.stack} --detach`)?",
            EXIT_NOT_EVALUATED,
        )
    out.mkdir(parents=True, exist_ok=True)
    charts = _charts(data, out)
    (out / "utilization.json").write_text(json.dumps(data.to_json(), indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "utilization.html").write_text(_html(data, charts), encoding="utf-8")
    return data
