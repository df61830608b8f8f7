"""The lgcloud exporter: allocation, capacity, SLA targets, drill results and cgroup use as
metrics (a fresh CollectorRegistry per test), and the utilization report's arithmetic."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry

from lgcloud.model.config import load_stack
from lgcloud.observe.exporter import LabCollector, VmUsage, cgroup_paths, only_from, usage_from_cgroup
from lgcloud.observe.utilization import Server, cost_split, size_for_peak, utilization

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def dev():
    return load_stack("dev")


def registry(cfg, drills, usage=dict) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(LabCollector(cfg, drills, usage))
    return reg


def test_every_vm_has_its_allocation(dev, tmp_path):
    reg = registry(dev, tmp_path / "drills")
    labels = {"vm": "a-city-db", "site": "center", "role": "db", "municipality": "a-city"}
    assert reg.get_sample_value("lgcloud_vm_allocated_vcpus", labels) == 0.5, "a-city-db vCPUs"
    assert reg.get_sample_value("lgcloud_vm_allocated_memory_bytes", labels) == 1024 * MIB, "a-city-db memory"


def test_every_site_has_its_capacity(dev, tmp_path):
    reg = registry(dev, tmp_path / "drills")
    assert reg.get_sample_value("lgcloud_site_capacity_vcpus", {"site": "center"}) == 8
    assert reg.get_sample_value("lgcloud_site_capacity_memory_bytes", {"site": "backup"}) == 12288 * MIB


def test_sla_targets_are_published_per_municipality_and_system(dev, tmp_path):
    reg = registry(dev, tmp_path / "drills")
    c_village = {"municipality": "c-village", "code": "133078", "system": "jumin", "system_name": "住民記録"}
    assert reg.get_sample_value("lgcloud_sla_rpo_seconds", c_village) == 5
    assert reg.get_sample_value("lgcloud_sla_availability_ratio", c_village) == pytest.approx(0.999)
    assert reg.get_sample_value("lgcloud_sla_window_seconds", c_village) == 30 * 86400
    assert reg.get_sample_value("lgcloud_sla_latency_p95_seconds", c_village) == 0.5
    linkage = {**c_village, "system": "linkage", "system_name": "番号連携"}  # every municipality's tenant
    assert reg.get_sample_value("lgcloud_sla_availability_ratio", linkage) == pytest.approx(0.999)


def test_no_drill_directory_means_no_drill_metrics(dev, tmp_path):
    reg = registry(dev, tmp_path / "absent")
    assert not [s for m in reg.collect() if m.name.startswith("lgcloud_drill") for s in m.samples]


def test_the_last_drill_of_each_scenario_is_published(dev, tmp_path):
    drills = tmp_path / "drills"
    drills.mkdir()
    (drills / "latest-site-loss.json").write_text(
        json.dumps(
            {
                "scenario": "site-loss",
                "stack": "dev",
                "started": "2026-11-26T10:00:00+09:00",
                "finished": "2026-11-26T10:01:00+09:00",
                "passed": False,
                "municipalities": [
                    {
                        "id": "a-city",
                        "code": "012025",
                        "rto_seconds": 14.2,
                        "rpo_seconds": 0,
                        "lost_writes": 0,
                        "passed": True,
                    },
                    {
                        "id": "c-village",
                        "code": "133078",
                        "rto_seconds": 41.0,
                        "rpo_seconds": 1.5,
                        "lost_writes": 3,
                        "passed": False,
                    },
                    {
                        "id": "b-town",
                        "code": "013315",
                        "rto_seconds": None,
                        "rpo_seconds": 0,
                        "lost_writes": 0,
                        "passed": False,
                    },
                    {
                        "id": "gone-town",
                        "code": "000000",
                        "rto_seconds": 1,
                        "rpo_seconds": 0,
                        "lost_writes": 0,
                        "passed": True,
                    },
                ],
                "linkage": {"requester": "b-town", "provider": "a-city", "rto_seconds": 7.8, "passed": True},
            }
        )
    )
    (drills / "latest-broken.json").write_text("{not json")
    reg = registry(dev, drills)
    c_village = {"scenario": "site-loss", "municipality": "c-village", "code": "133078"}
    assert reg.get_sample_value("lgcloud_drill_rto_seconds", c_village) == 41.0
    assert reg.get_sample_value("lgcloud_drill_lost_writes", c_village) == 3
    assert reg.get_sample_value(
        "lgcloud_drill_rto_seconds", {**c_village, "municipality": "b-town", "code": "013315"}
    ) == float("inf")
    assert reg.get_sample_value(
        "lgcloud_drill_linkage_rto_seconds", {"scenario": "site-loss", "municipality": "b-town", "code": "013315"}
    ) == pytest.approx(7.8)
    assert reg.get_sample_value("lgcloud_drill_municipality_passed", c_village) == 0
    assert reg.get_sample_value("lgcloud_drill_passed", {"scenario": "site-loss"}) == 0
    assert (
        reg.get_sample_value("lgcloud_drill_finished_timestamp_seconds", {"scenario": "site-loss"})
        == datetime.fromisoformat("2026-11-26T10:01:00+09:00").timestamp()
    )
    assert (
        reg.get_sample_value(
            "lgcloud_drill_rto_seconds", {"scenario": "site-loss", "municipality": "gone-town", "code": "000000"}
        )
        is None
    )


def test_vm_use_is_published_for_running_vms_only(dev, tmp_path):
    reg = registry(dev, tmp_path, lambda: {"a-city-app": VmUsage(12.5, 300 * MIB)})
    labels = {"vm": "a-city-app", "site": "center", "role": "app", "municipality": "a-city"}
    assert reg.get_sample_value("lgcloud_vm_cpu_seconds_total", labels) == 12.5
    assert reg.get_sample_value("lgcloud_vm_memory_used_bytes", labels) == 300 * MIB
    assert (
        reg.get_sample_value("lgcloud_vm_memory_used_bytes", {**labels, "vm": "b-town-app", "municipality": "b-town"})
        is None
    )


def test_cgroup_v1_use_is_read_as_docker_stats_reads_it(tmp_path):
    paths = cgroup_paths("4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/docker/abc\n")
    (tmp_path / "cpuacct/docker/abc").mkdir(parents=True)
    (tmp_path / "memory/docker/abc").mkdir(parents=True)
    (tmp_path / "cpuacct/docker/abc/cpuacct.usage").write_text("2500000000\n")
    (tmp_path / "memory/docker/abc/memory.usage_in_bytes").write_text(f"{300 * MIB}\n")
    (tmp_path / "memory/docker/abc/memory.stat").write_text(f"cache 1\ntotal_inactive_file {100 * MIB}\n")
    assert usage_from_cgroup(paths, tmp_path) == VmUsage(2.5, 200 * MIB)


def test_cgroup_v2_use_is_read_as_docker_stats_reads_it(tmp_path):
    paths = cgroup_paths("0::/system.slice/docker-abc.scope\n")
    group = tmp_path / "system.slice/docker-abc.scope"
    group.mkdir(parents=True)
    (group / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (group / "memory.current").write_text(f"{64 * MIB}\n")
    (group / "memory.stat").write_text(f"anon 1\ninactive_file {16 * MIB}\n")
    assert usage_from_cgroup(paths, tmp_path) == VmUsage(1.5, 48 * MIB)


@pytest.mark.parametrize(
    "peak_vcpus, peak_mb, server",
    [
        (0.0, 0, Server(1, 1024)),
        (0.7, 716.8, Server(1, 1024)),
        (0.71, 717, Server(2, 2048)),
        (2.1, 3000, Server(3, 5120)),
    ],
)
def test_a_dedicated_server_is_sized_so_its_peak_uses_at_most_70_percent(peak_vcpus, peak_mb, server):
    assert size_for_peak(peak_vcpus, peak_mb) == server


def test_utilization_of_nothing_is_unknown_not_zero():
    assert utilization(1, 0) is None and utilization(1, 4) == 0.25


def test_the_cost_split_adds_up_and_follows_cpu_and_memory_equally():
    shares = cost_split({"a-city": (1.0, 1024), "b-town": (1.0, 3072), "c-village": (2.0, 0)})
    assert sum(shares.values()) == pytest.approx(1)
    assert shares == pytest.approx({"a-city": 0.25, "b-town": 0.5, "c-village": 0.25})


def test_the_exporter_refuses_every_client_but_the_allowed():
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"metrics"]

    guarded = only_from({"10.100.0.9"}, app)
    answered: list[str] = []

    def start(status, headers):
        answered.append(status)

    assert guarded({"REMOTE_ADDR": "10.100.0.9"}, start) == [b"metrics"]
    assert b"monitor only" in guarded({"REMOTE_ADDR": "10.100.0.20"}, start)[0]
    assert answered == ["200 OK", "403 Forbidden"]
