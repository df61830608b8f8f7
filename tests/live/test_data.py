"""No operation loses data: the runbook's own advice for memory pressure (raise a database VM's
allocation and run `lgcloud up`) replaces the VMs and keeps every row, at both sites, with
replication streaming again; the replica is replaced first and the primary only in the next run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from lgcloud.model.config import stack_file

from .conftest import STACK
from .offices import call

pytestmark = pytest.mark.live

MUNICIPALITY = "a-city"
# Every resident, as a count and a checksum of their 住民票コード (no personal data leaves the VM).
ROWS = (
    "cd / && chpst -u postgres psql -XAtq -d jumin "
    "-c \"SELECT count(*), md5(string_agg(resident_code, ' ' ORDER BY resident_code)) FROM residents\""
)


def lgcloud(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "lgcloud.cli", *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"lgcloud {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def streams(vm) -> str:
    return vm(f"{MUNICIPALITY}-db").check_output(
        "cd / && chpst -u postgres psql -XAtq -c 'SELECT state FROM pg_stat_replication'"
    )


@pytest.fixture
def raised(configured, tmp_path):
    """dev with Ａ市's database VMs given more memory, as docs/runbooks.md says to; dev as
    declared again afterwards (which replaces them once more, keeping their data too)."""
    document = yaml.safe_load(stack_file(STACK).read_text(encoding="utf-8"))
    municipality = next(m for m in document["config"]["lgcloud:municipalities"] if m["id"] == MUNICIPALITY)
    municipality["allocation"] = {"db": {"vcpus": 0.5, "memory_mb": 768}}
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    yield str(path)
    for _ in range(2):  # the replica, then its primary
        lgcloud("up", "--stack", STACK)
        lgcloud("configure", "--stack", STACK, "--limit", f"municipality_{MUNICIPALITY.replace('-', '_')}")


def test_a_raised_database_allocation_keeps_every_row_at_both_sites(raised, vm):
    clerk = vm(f"{MUNICIPALITY}-terminal")
    for n in range(5):  # residents registered by the office, as every row of the lab is
        resident = {
            "name": f"保全 {n}",
            "kana": "ホゼン",
            "birth_date": "2026-11-01",
            "sex": "女",
            "address": "本町1-1",
            "event": "birth",
            "event_date": "2026-11-01",
        }
        assert call(clerk, MUNICIPALITY, "POST", "/api/residents", resident).status == 201
    before = {side: vm(f"{MUNICIPALITY}-{side}").check_output(ROWS) for side in ("db", "db-replica")}
    assert before["db"] == before["db-replica"] and not before["db"].startswith("0"), before
    limit = f"municipality_{MUNICIPALITY.replace('-', '_')}"

    first = lgcloud("up", "--file", raised)
    assert f"lgcloud-{STACK}-{MUNICIPALITY}-db-replica" in first.stderr and "waiting for the next run" in first.stderr
    assert f"{MUNICIPALITY}-db (its replica is replaced in this one)" in first.stderr, first.stderr
    assert f"its data stays on lgcloud-{STACK}-{MUNICIPALITY}-db-replica-data" in first.stderr, first.stderr
    lgcloud("configure", "--file", raised, "--limit", limit)
    assert streams(vm) == "streaming", "the replaced replica does not stream"

    second = lgcloud("up", "--file", raised)
    assert f"replace   container lgcloud-{STACK}-{MUNICIPALITY}-db " in second.stderr, second.stderr
    assert "its primary database stops while it is replaced" in second.stderr, second.stderr
    lgcloud("configure", "--file", raised, "--limit", limit)

    after = {side: vm(f"{MUNICIPALITY}-{side}").check_output(ROWS) for side in ("db", "db-replica")}
    assert after == before, f"rows changed: {before} -> {after}"
    assert streams(vm) == "streaming"
