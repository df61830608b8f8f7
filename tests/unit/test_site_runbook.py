"""The site-level runbook's own rules, without a lab: a site's failovers recorded as one write,
and a step tried again only while the RTO leaves time for it."""

from __future__ import annotations

import shutil
import time

import pytest

from lgcloud.ops.drill.site import _until
from lgcloud.ops.lab import LabError
from lgcloud.state.directory import state_dir
from lgcloud.state.failover import Failover, record_failback, record_failover, record_site_failover, served_from_backup

STACK = "sitetest"


@pytest.fixture
def stack():
    yield STACK
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


def test_a_site_failover_records_every_municipality_and_keeps_the_others(stack):
    record_failover(stack, "a-city", Failover(1.0, "db-loss", fenced=("a-city-db",)))
    site = {m: Failover(2.0, "site-loss", fenced=(f"{m}-db",)) for m in ("m01", "m02", "m03")}
    record_site_failover(stack, site)
    served = served_from_backup(stack)
    assert set(served) == {"a-city", "m01", "m02", "m03"}
    assert served["m02"] == Failover(2.0, "site-loss", fenced=("m02-db",))
    record_failback(stack, "m02")
    assert set(served_from_backup(stack)) == {"a-city", "m01", "m03"}


def test_a_failing_step_is_tried_again_until_it_works():
    tries = []

    def flaky() -> str:
        tries.append(time.time())
        if len(tries) < 3:
            raise LabError("gateway-standby: SSHException: Timeout opening channel")
        return "done"

    assert _until(time.time() + 10, flaky) == "done"
    assert len(tries) == 3
    assert tries[2] - tries[1] > tries[1] - tries[0]  # the pause grows


def test_a_step_still_failing_at_the_deadline_fails_with_its_reason():
    started = time.time()
    with pytest.raises(LabError, match="Timeout opening channel"):
        _until(started + 1.0, lambda: (_ for _ in ()).throw(LabError("Timeout opening channel")))
    assert time.time() - started <= 1.0 + 0.1


def test_a_mistake_is_not_tried_again():
    tries = []

    def wrong() -> None:
        tries.append(1)
        raise ValueError("not a WAL segment name")

    with pytest.raises(ValueError):
        _until(time.time() + 10, wrong)
    assert tries == [1]
