"""How a drill turns a clerk's log into RTO, RPO and a verdict; and the report it writes."""

from __future__ import annotations

import pytest

from lgcloud.model.topology import plan
from lgcloud.ops.drill.clerk import Attempt, _entries
from lgcloud.ops.drill.measure import Outcome, judge, outages, recovery
from lgcloud.ops.drill.report import DrillReport, Integrity, markdown
from lgcloud.ops.drill.runbook import Step, Unreplicated
from lgcloud.ops.drill.scenarios import Failback
from lgcloud.ops.lab import Pair

INJECTION = 1000.0


def ack(t: float, code: str) -> Attempt:
    return Attempt(t - 0.02, t, 201, code)


def miss(t: float) -> Attempt:
    return Attempt(t - 1.0, t, None, None)


INTACT = Integrity(before={"at": "t", "primary": "1 x", "replica": "1 x"}, kept_rows_after="1 x", ok=True)
CHANGED = Integrity(before={"at": "t", "primary": "1 x", "replica": "1 x"}, kept_rows_after="2 y", ok=False)


def pair(dev, municipality: str) -> Pair:
    return Pair.of(dev.municipality(municipality), plan(dev))


def test_rto_is_the_gap_from_the_injection_to_the_first_acknowledgement():
    log = [ack(999.8, "a"), miss(1001.0), miss(1002.0), ack(1002.6, "b"), ack(1002.8, "c")]
    assert recovery(log, INJECTION) == pytest.approx(2.6)


def test_rto_is_the_longest_gap_when_the_outage_comes_later():
    log = [ack(1000.2, "a"), ack(1000.4, "b"), miss(1001.4), miss(1002.4), ack(1004.4, "c")]
    assert recovery(log, INJECTION) == pytest.approx(4.0)


def test_an_office_not_served_at_the_end_has_no_rto():
    assert recovery([ack(1000.5, "a"), miss(1003.0), miss(1006.0)], INJECTION) is None
    assert recovery([ack(999.0, "a")], INJECTION) is None


def test_failures_after_the_last_acknowledgement_count_as_a_gap():
    """One last request failed 1.5 s after the office was served: served, and the gap counts."""
    assert recovery([ack(1000.5, "a"), miss(1002.0)], INJECTION) == pytest.approx(1.5)
    assert recovery([ack(1003.0, "a"), ack(1003.2, "b"), miss(1004.0)], INJECTION) == pytest.approx(3.0)


def test_the_report_lists_every_gap_over_a_second_and_one_still_open_at_the_end():
    log = [ack(1000.3, "a"), miss(1001.3), ack(1002.0, "b"), ack(1002.5, "c"), miss(1003.5), miss(1004.5)]
    assert outages(log, INJECTION) == [(0.3, 2.0), (2.5, 4.5)]
    assert outages([ack(1000.2, "a"), ack(1000.9, "b")], INJECTION) == []


def test_a_lost_acknowledged_write_fails_a_synchronous_municipality(dev):
    log = [ack(999.5, "a"), ack(999.9, "b"), ack(1001.5, "c")]
    verdict = judge(dev, Outcome(pair(dev, "a-city"), log, {"a", "c"}), INJECTION, INTACT)
    assert verdict.lost_writes == 1 and verdict.lost_codes == ["b"]
    assert verdict.rpo_seconds == pytest.approx(0.1)
    assert not verdict.passed and "1 acknowledged write(s) lost" in verdict.problems


def test_a_restore_rolls_back_the_writes_after_the_damage_and_lists_them(dev):
    """data-corruption: writes stop at 1000.4; after the restore the office is served from 1012.0."""
    log = [ack(999.6, "a"), ack(999.8, "b"), ack(1000.2, "c"), miss(1005.0), ack(1012.0, "d"), ack(1012.2, "e")]
    verdict = judge(dev, Outcome(pair(dev, "a-city"), log, {"a", "b", "d", "e"}), INJECTION, INTACT, resumed=1000.4)
    assert verdict.rolled_back_codes == ["c"] and verdict.lost_writes == 0 and verdict.rpo_seconds == 0
    assert verdict.rto_seconds == pytest.approx(12.0) and verdict.passed


def test_a_write_from_before_the_damage_missing_after_the_restore_is_lost(dev):
    log = [ack(999.6, "a"), ack(999.8, "b"), ack(1012.0, "d")]
    verdict = judge(dev, Outcome(pair(dev, "a-city"), log, {"a", "d"}), INJECTION, INTACT, resumed=1000.4)
    assert verdict.lost_codes == ["b"] and verdict.rpo_seconds == pytest.approx(0.2) and not verdict.passed


def test_a_write_gone_after_the_service_returned_is_lost_not_rolled_back(dev):
    log = [ack(999.6, "a"), ack(1000.2, "c"), ack(1012.0, "d"), ack(1012.2, "e")]
    verdict = judge(dev, Outcome(pair(dev, "a-city"), log, {"a", "d"}), INJECTION, INTACT, resumed=1000.4)
    assert verdict.rolled_back_codes == ["c"] and verdict.lost_codes == ["e"] and not verdict.passed


def test_a_write_in_flight_when_writes_stopped_is_rolled_back_not_lost(dev):
    """Sent before the address was released (1000.4), answered just after it: it was written on the
    damaged data, which the restore took away."""
    log = [ack(999.6, "a"), Attempt(1000.3, 1000.5, 201, "c"), ack(1012.0, "d")]
    verdict = judge(dev, Outcome(pair(dev, "a-city"), log, {"a", "d"}), INJECTION, INTACT, resumed=1000.4)
    assert verdict.rolled_back_codes == ["c"] and verdict.lost_writes == 0 and verdict.passed


def test_writes_on_the_damaged_data_are_not_service(dev):
    """A write acknowledged after the damage but before writes stopped is no recovery, even if held."""
    log = [ack(999.6, "a"), ack(1000.1, "c")]
    verdict = judge(dev, Outcome(pair(dev, "a-city"), log, {"a", "c"}), INJECTION, INTACT, resumed=1000.4)
    assert verdict.rto_seconds is None and "the office was not served again" in verdict.problems


def test_an_asynchronous_municipality_may_lose_what_its_rpo_allows(dev):
    log = [ack(994.0, "a"), ack(998.0, "b"), ack(999.9, "c"), ack(1001.5, "d")]
    within = judge(dev, Outcome(pair(dev, "c-village"), log, {"a", "b", "d"}), INJECTION, INTACT)
    assert within.passed and within.lost_writes == 1 and within.targets.rpo_seconds == 5
    beyond = judge(dev, Outcome(pair(dev, "c-village"), log, {"d"}), INJECTION, INTACT)
    assert not beyond.passed and beyond.rpo_seconds == pytest.approx(6.0)


def test_rto_over_the_target_or_changed_data_fails(dev):
    slow = judge(dev, Outcome(pair(dev, "b-town"), [ack(1031.0, "a")], {"a"}), INJECTION, INTACT)
    assert not slow.passed and "over the target 30 s" in slow.problems[0]
    changed = judge(dev, Outcome(pair(dev, "b-town"), [ack(1001.0, "a")], {"a"}), INJECTION, CHANGED)
    assert not changed.passed


def test_the_markdown_report_shows_verdicts_timeline_and_state(dev):
    verdict = judge(dev, Outcome(pair(dev, "a-city"), [ack(1002.0, "a")], {"a"}), INJECTION, INTACT)
    report = DrillReport(
        scenario="db-loss",
        description="one primary dies",
        stack="dev",
        started=990.0,
        injection=INJECTION,
        finished=1010.0,
        passed=True,
        errors=[],
        municipalities=[verdict],
        state_after="served from the backup site: a-city",
        timeline=[Step(1000.5, "a-city", "promote the backup replica", "a-city-db-replica is primary", 0.2)],
    )
    page = markdown(report)
    assert "# Drill `db-loss` on stack `dev`: PASSED" in page
    assert "| Ａ市 (012025) | sync | 2.00 s | 30 s | 0.00 s | 0 s | 1 of 1 | 0 | ok | met |" in page
    assert "promote the backup replica | 0.20 s" in page
    assert "served from the backup site: a-city" in page


def test_failback_reports_the_rows_only_the_fenced_primary_held(dev):
    """Listed and kept for either replication; the verdict stands. Synchronous, such a row was in
    flight when the center was lost: committed there, never confirmed by the backup, never
    acknowledged to an office."""
    failback = Failback()
    failback.unreplicated = {
        "c-village": Unreplicated(["12345678901"], "/state/unreplicated/x-c-village.json"),
        "a-city": Unreplicated(["10987654321"], "/state/unreplicated/x-a-city.json"),
    }
    results = []
    for municipality in ("c-village", "a-city"):
        result = judge(dev, Outcome(pair(dev, municipality), [ack(1002.0, "a")], {"a"}), INJECTION, INTACT)
        failback.judge(result)
        results.append(result)
    asynchronous, synchronous = results
    assert asynchronous.passed and asynchronous.unreplicated_codes == ["12345678901"]
    assert synchronous.passed and synchronous.unreplicated_codes == ["10987654321"]
    report = DrillReport("failback", "back", "dev", 990.0, INJECTION, 1010.0, False, [], results, [], "normal")
    page = markdown(report)
    assert "## Only on the fenced center primary: enter these again" in page
    assert (
        "住民票コード 12345678901; 0 情報提供等記録 of its tenant, kept beside the chain; "
        "all in `/state/unreplicated/x-c-village.json` (0600)"
    ) in page


def test_a_clerk_log_written_in_a_tenant_vm_is_not_trusted():
    log = "\n".join(
        [
            '{"sent": 1.0, "done": 1.1, "status": 201, "code": "48213907715"}',
            '{"sent": 2.0, "done": 2.1, "status": 201, "code": "1\' OR \'1\'=\'1"}',
            '{"sent": "soon", "done": 3.1, "code": "48213907716"}',
            '["not", "an", "attempt"]',
            '{"sent": 4.0, "done": 4',
        ]
    )
    assert [(e["sent"], e.get("code")) for e in _entries(log)] == [(1.0, "48213907715"), (2.0, None)]
