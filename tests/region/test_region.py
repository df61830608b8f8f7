"""The lab above sshd's default of 10 sessions per connection: the `region` stack (12
municipalities, 69 VMs on 10.120/16) loses its center, every office is served again from the
backup site with nothing acknowledged lost, and fails back; then a failover cut short half-way is
completed and failed back by `lgcloud drill failback` alone.

It brings up, configures and finally removes a lab of its own beside `dev` (about 12 minutes), so
`make test` leaves it out; run it with ``make test-region`` (``.venv/bin/pytest -m region``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lgcloud.model.config import load_stack
from lgcloud.ops.drill.runbook import fence, promote, release_at_center, take_at_backup
from lgcloud.ops.drill.site import SITE, center_vms
from lgcloud.ops.lab import CHANNELS_PER_VM, Lab
from lgcloud.state.failover import Failover, record_site_failover, served_from_backup
from lgcloud.state.keys import has_keypair

pytestmark = [pytest.mark.region]

STACK = "region"
RTO_BOUND = 30.0  # seconds: the stack's target, a correctness bound; benchmarks/drills.py measures


def lgcloud(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", *args, "--stack", STACK],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def drill(scenario: str) -> dict:
    result = lgcloud("drill", scenario, "--json", timeout=1200)
    assert result.stdout.strip().startswith("{"), f"{scenario} printed no report:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def region():
    """The region lab, up and configured; removed with its data at the end (it is the test's own)."""
    if not has_keypair(STACK):  # left by another checkout: nothing of it could be reached
        lgcloud("down", "--delete-data", timeout=600)
    for verb in ("up", "configure"):
        done = lgcloud(verb)
        assert done.returncode == 0, (
            f"lgcloud {verb} --stack {STACK} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    cfg = load_stack(STACK)
    yield cfg
    gone = lgcloud("down", "--delete-data", timeout=600)
    assert gone.returncode == 0, gone.stderr[-2000:]


def assert_served_again(report: dict, ids: set[str]) -> None:
    problems = {m["id"]: m["problems"] for m in report["municipalities"] if m["problems"]}
    assert report["passed"], (problems, report["errors"])
    assert {m["id"] for m in report["municipalities"]} == ids
    for m in report["municipalities"]:
        assert m["acknowledged_writes"] > 5, m
        assert m["rto_seconds"] is not None and m["rto_seconds"] <= RTO_BOUND, m
        assert m["integrity"]["ok"], m["integrity"]
        if m["replication"] == "sync":
            assert m["lost_writes"] == 0 and m["rpo_seconds"] == 0, m


def assert_normal(lab: Lab) -> None:
    assert served_from_backup(STACK) == {}
    for p in lab.pairs.values():
        assert lab.sql(p.db, "SELECT pg_is_in_recovery()") == "f", p.db
        assert lab.sql(p.replica, "SELECT pg_is_in_recovery()") == "t", p.replica
    held = lab.run("gateway", "lgcloud-service-address list").split()
    assert sorted(held) == sorted(p.service_address for p in lab.pairs.values())
    assert lab.run("gateway-standby", "lgcloud-service-address list").split() == []


def test_more_commands_at_once_on_one_vm_than_sshd_has_sessions_all_run(region):
    """30 commands at once on one VM's one connection (sshd refuses an 11th session): all answer."""
    with Lab(region) as lab:
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(lambda i: lab.run("gateway-standby", f"sleep 0.3; echo {i}"), range(30)))
    assert [a.strip() for a in answers] == [str(i) for i in range(30)]
    assert CHANNELS_PER_VM < 10


def test_site_loss_serves_every_office_again_from_the_backup(region):
    report = drill("site-loss")
    assert_served_again(report, {m.id for m in region.municipalities})
    site = [s for s in report["timeline"] if s["municipality"] == SITE and not s["detail"].startswith("FAILED")]
    assert [s["name"] for s in site] == [
        "detected: center lost",
        "fence the center",
        "take the service addresses at the backup",
        "seal the fenced primaries",
        "strike the addresses from the lost gateway",
    ]
    [take] = [s for s in site if s["name"] == "take the service addresses at the backup"]
    with Lab(region) as lab:
        # One command took every address; nothing was served from the backup before the fence.
        assert all(p.service_address in take["detail"].split() for p in lab.pairs.values()), take
        [fence] = [s for s in site if s["name"] == "fence the center"]
        promotions = [s for s in report["timeline"] if s["name"] == "promote the backup replica"]
        assert {s["municipality"] for s in promotions} == set(lab.pairs)
        assert all(s["at"] >= fence["at"] + fence["seconds"] - 0.01 for s in (*promotions, take))
        assert set(served_from_backup(STACK)) == set(lab.pairs)


def test_failback_after_site_loss_returns_every_municipality_to_the_center(region):
    assert_served_again(drill("failback"), {m.id for m in region.municipalities})
    with Lab(region) as lab:
        assert_normal(lab)


def test_failback_completes_a_failover_cut_short_half_way(region):
    """The center lost and the runbook stopped part-way: every failover recorded, some replicas
    promoted, fewer addresses moved. `lgcloud drill failback` finishes each failover, then fails
    back, with nothing lost."""
    with Lab(region) as lab:
        pairs = list(lab.pairs.values())
        record_site_failover(STACK, {p.id: Failover(time.time(), "site-loss", fenced=(p.db,)) for p in pairs})
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lab.kill, center_vms(lab)))
        for p in pairs[:6]:
            fence(lab, p)
            promote(lab, p)
        moved = [p.service_address for p in pairs[:3]]
        take_at_backup(lab, moved)
        release_at_center(lab, moved)  # struck from the lost gateway's record: those three moved whole
    report = drill("failback")
    unfinished = {s["municipality"] for s in report["timeline"] if s["name"] == "failover found unfinished"}
    assert unfinished == {p.id for p in pairs[3:]}
    assert_served_again(report, {p.id for p in pairs})
    with Lab(region) as lab:
        assert_normal(lab)
