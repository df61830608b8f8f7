"""`lgcloud report utilization`, written from a Prometheus stand-in: the charts, the HTML and the
JSON it leaves, and what it refuses."""

from __future__ import annotations

import json

import pytest

from lgcloud.errors import EXIT_BAD_INPUT, EXIT_NOT_EVALUATED, OperatorError
from lgcloud.model.config import load_stack
from lgcloud.model.topology import plan
from lgcloud.observe.utilization import write_report
from lgcloud.ops.inventory import build_inventory

MIB = 1024 * 1024


class Measured:
    """Every VM uses 0.1 vCPU and 100 MiB; sums and peaks follow from that."""

    url = "http://test"

    def __init__(self, cfg, silent: bool = False):
        self.vms = plan(cfg).vms
        self.ids = {m.code: m.id for m in cfg.municipalities}
        self.silent = silent

    def query(self, expr: str, at=None):
        if self.silent:
            return []
        memory = "memory" in expr
        each = 100 * MIB if memory else 0.1
        municipal = [v for v in self.vms if v.role != "terminal" and v.municipality in self.ids]
        if "by (municipality)" in expr:
            return [
                ({"municipality": m}, each * sum(self.ids[v.municipality] == m for v in municipal))
                for m in self.ids.values()
            ]
        if "sum(" in expr:
            return [({}, each * len(municipal))]
        if expr.startswith("max_over_time(site:"):
            return [({"site": s}, each * sum(v.site == s for v in self.vms)) for s in ("center", "backup")]
        if "count_over_time" in expr:
            return [({"vm": v.name}, 720.0) for v in self.vms]
        return [({"vm": v.name}, each) for v in self.vms]


def test_the_report_is_written_with_its_charts_and_figures(dev, tmp_path):
    report = write_report(dev, Measured(dev), tmp_path, "1h")
    for chart in ("vms", "sites", "consolidation", "cost"):
        assert (tmp_path / f"{chart}.png").stat().st_size > 1000, f"{chart}.png"
    page = (tmp_path / "utilization.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 4 and "Ａ市" in page
    written = json.loads((tmp_path / "utilization.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(report.to_json())), "the JSON is the report's one form"
    assert {v["vm"] for v in written["vms"]} == {v.name for v in plan(dev).vms}


def test_the_shared_pool_needs_fewer_cpus_than_dedicated_servers(dev, tmp_path):
    consolidation = write_report(dev, Measured(dev), tmp_path, "1h").consolidation
    # Each municipality's 4 servers peak at 0.4 vCPU: a 1-vCPU server each; together 1.2 vCPU: 2 vCPUs.
    assert consolidation.dedicated_total.vcpus == 3 and consolidation.shared.server.vcpus == 2, consolidation
    assert consolidation.shared.cpu_utilisation > consolidation.dedicated_total.cpu_utilisation


def test_the_cost_split_adds_up_to_the_whole(dev, tmp_path):
    cost = write_report(dev, Measured(dev), tmp_path, "1h").cost
    assert sum(c.by_allocation for c in cost) == pytest.approx(1) and sum(c.by_use for c in cost) == pytest.approx(1)


def test_a_bad_window_is_refused_before_asking(dev, tmp_path):
    with pytest.raises(OperatorError, match="--window") as refused:
        write_report(dev, Measured(dev), tmp_path, "forever")
    assert refused.value.exit_code == EXIT_BAD_INPUT and not list(tmp_path.iterdir())


def test_nothing_measured_cannot_be_reported(dev, tmp_path):
    with pytest.raises(OperatorError, match="no use measured") as refused:
        write_report(dev, Measured(dev, silent=True), tmp_path, "1h")
    assert refused.value.exit_code == EXIT_NOT_EVALUATED and "lgcloud exporter" in refused.value.hint


def test_a_large_stack_scrapes_less_often_than_dev(dev):
    """The monitor role reads the interval from the inventory: 5 s on dev, the 15 s scale declares."""
    scale = load_stack("scale")
    for cfg, expected in ((dev, "5s"), (scale, "15s")):
        inventory = build_inventory(cfg, key="id", pki_dir="/pki")["all"]["vars"]
        assert inventory["lgcloud_scrape_interval"] == expected
