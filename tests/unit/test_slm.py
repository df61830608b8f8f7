"""Service level management's own rules, without a lab: the service calendar (office days, Japan's
holidays, 年末年始), planned work recorded and refused, when a municipality is put into service,
and how failed probes become incidents."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from lgcloud.cli import main
from lgcloud.errors import EXIT_BAD_INPUT, OperatorError
from lgcloud.model.calendar import JST, duration, office_day, service_spans, subtract
from lgcloud.model.config import ConfigInvalid, parse, read_file, stack_file
from lgcloud.model.schema import ServiceHours
from lgcloud.observe.slm import _runs, incident_id, planned_spans
from lgcloud.state.directory import state_dir
from lgcloud.state.slm import (
    end_maintenance,
    in_service_since,
    maintenance_windows,
    planned_work,
    record_in_service,
    start_maintenance,
)

STACK = "slmtest"
WINDOW_HOURS = ServiceHours(days="office days", start="08:30", end="17:15")


@pytest.fixture
def stack():
    shutil.rmtree(state_dir(STACK), ignore_errors=True)
    yield STACK
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


def jst(*args: int) -> float:
    return dt.datetime(*args, tzinfo=JST).timestamp()


# --- the service calendar ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "open_"),
    [
        (dt.date(2026, 12, 1), True),  # a Tuesday
        (dt.date(2026, 12, 5), False),  # Saturday
        (dt.date(2026, 11, 23), False),  # 勤労感謝の日
        (dt.date(2026, 9, 22), False),  # 国民の休日 between 敬老の日 and 秋分の日
        (dt.date(2026, 12, 29), False),  # 年末年始
        (dt.date(2027, 1, 4), True),  # the first office day of the year
    ],
)
def test_office_days_are_those_the_offices_open(day, open_):
    assert office_day(day) is open_


def test_a_december_of_office_days_holds_the_agreed_hours_of_each_office_day_only():
    spans = service_spans(WINDOW_HOURS, jst(2026, 12, 1), jst(2027, 1, 1))
    # December 2026: 23 weekdays and no 祝日, of which 29-31 are 年末年始; 8 h 45 min each.
    assert len(spans) == 20 and duration(spans) == 20 * (8 * 3600 + 45 * 60)
    first = dt.datetime.fromtimestamp(spans[0][0], JST)
    assert (first.day, first.hour, first.minute) == (1, 8, 30)


def test_every_hour_is_one_span_and_planned_work_is_cut_out_of_it():
    spans = service_spans(ServiceHours(), 0, 86400)
    assert spans == [(0, 86400)]
    assert subtract(spans, [(3600, 7200), (80000, 90000)]) == [(0, 3600), (7200, 80000)]


@pytest.mark.parametrize(
    ("hours", "problem"),
    [
        ({"start": "8:3"}, "HH:MM"),
        ({"start": "25:00"}, "HH:MM"),
        ({"start": "17:15", "end": "08:30"}, "before they start"),
        ({"days": "weekends"}, "every day"),
    ],
)
def test_bad_service_hours_are_refused_with_their_key_path(hours, problem):
    values = read_file(stack_file("dev"))
    values["sla"] = {**values["sla"], "service_hours": hours}
    with pytest.raises(ConfigInvalid) as refused:
        parse(values, "dev")
    found = [f"{p.path}: {p.message}" for p in refused.value.problems]
    assert any(f.startswith("lgcloud:sla.service_hours") and problem in f for f in found), found


def test_a_municipality_may_agree_other_hours_for_one_system():
    values = read_file(stack_file("dev"))
    values["municipalities"][0]["sla"] = {"zei": {"service_hours": {"days": "office days", "start": "08:30"}}}
    cfg = parse(values, "dev")
    assert cfg.sla_for(cfg.municipalities[0], "zei").service_hours.days == "office days"
    assert cfg.sla_for(cfg.municipalities[0], "jumin").service_hours.always


# --- planned work ----------------------------------------------------------------------------------


def test_an_operators_window_is_opened_and_closed_with_who_and_why(stack):
    opened = start_maintenance(stack, "OS patching", ["b-town"])
    closed = end_maintenance(stack, municipalities=["b-town"])
    assert (closed.id, closed.reason, closed.municipalities) == (opened.id, "OS patching", ("b-town",))
    assert closed.end is not None and closed.end >= closed.start and closed.by


def test_an_overlapping_window_is_refused_and_nothing_is_written(stack):
    start_maintenance(stack, "storage work")  # the whole stack
    before = (state_dir(stack) / "maintenance.json").read_bytes()
    with pytest.raises(OperatorError, match="would overlap") as refused:
        start_maintenance(stack, "OS patching", ["a-city"])
    assert refused.value.exit_code == EXIT_BAD_INPUT
    assert (state_dir(stack) / "maintenance.json").read_bytes() == before


def test_an_end_without_a_start_is_refused(stack):
    with pytest.raises(OperatorError, match="not open") as refused:
        end_maintenance(stack, municipalities=["a-city"])
    assert refused.value.exit_code == EXIT_BAD_INPUT
    assert maintenance_windows(stack) == []


def test_the_labs_own_work_is_a_window_closed_however_it_ends_and_dropped_when_it_did_nothing(stack):
    with pytest.raises(RuntimeError), planned_work(stack, "drill", "lgcloud drill site-loss"):
        raise RuntimeError("the drill stopped")
    with planned_work(stack, "up", "lgcloud up") as work:
        work.nothing_done()
    (drill,) = maintenance_windows(stack)
    assert (drill.kind, drill.end is not None) == ("drill", True)


def test_announced_drills_are_planned_work_unless_the_stack_says_otherwise(stack):
    with planned_work(stack, "drill", "lgcloud drill db-loss", ["a-city"]):
        pass
    windows = maintenance_windows(stack)
    assert len(planned_spans(windows, "a-city", True, 0)) == 1
    assert planned_spans(windows, "a-city", False, 0) == [] and planned_spans(windows, "b-town", True, 0) == []


def test_the_cli_refuses_bad_maintenance_input_with_exit_2_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    shutil.copy(stack_file("dev"), path)
    try:
        assert main(["maintenance", "end", "--file", str(path)]) == EXIT_BAD_INPUT
        assert main(["maintenance", "start", "--file", str(path), "--reason", "x", "--municipality", "z"]) == 2
        assert main(["maintenance", "start", "--file", str(path), "--reason", " "]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert "not open" in err and "no municipality 'z'" in err and "needs a reason" in err, err
        assert maintenance_windows(STACK) == []
    finally:
        shutil.rmtree(state_dir(STACK), ignore_errors=True)


# --- in service, incidents -------------------------------------------------------------------------


def test_a_municipality_keeps_the_date_it_was_first_put_into_service(stack):
    record_in_service(stack, ["a-city"], at=100.0)
    record_in_service(stack, ["a-city", "b-town"], at=200.0)
    assert in_service_since(stack) == {"a-city": 100.0, "b-town": 200.0}
    assert json.loads((state_dir(stack) / "in-service.json").read_text()) == {"a-city": 100.0, "b-town": 200.0}


def test_failed_probes_become_runs_from_the_first_failure_to_the_first_success_again():
    probes = [(0, 1), (5, 0), (10, 0), (15, 1), (20, 1), (100, 0), (105, 1)]
    assert _runs(probes, 0, 200, ongoing=True) == [(5, 15), (100, 105)]


def test_a_flapping_service_is_one_incident_and_one_still_failing_is_ongoing():
    probes = [(0, 0), (5, 1), (10, 0), (15, 1), (20, 0)]
    assert _runs(probes, 0, 100, ongoing=True) == [(0, None)]
    assert _runs(probes, 0, 100, ongoing=False) == [(0, 100)]  # cut by the end of the window


def test_an_incident_id_names_municipality_system_and_start_in_jst():
    assert incident_id("b-town", "jumin", jst(2026, 12, 2, 17, 30, 15)) == "b-town-jumin-20261202-173015"


# --- the monthly report's bad input ----------------------------------------------------------------


@pytest.fixture
def stack_file_copy(tmp_path):
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    shutil.copy(stack_file("dev"), path)
    shutil.rmtree(state_dir(STACK), ignore_errors=True)
    record_in_service(STACK, ["a-city"], at=jst(2026, 11, 20, 10, 0))
    yield path
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13"], "not a month"),
        (["--month", "12/2026"], "not a month"),
        (["--month", "2999-01"], "has not begun"),
        (["--month", "2026-10"], "did not exist in 2026-10: its first record is of 2026-11-20"),
        (["--month", "2026-11", "--municipality", "d-town"], "no municipality 'd-town'"),
        ([], "needs --month"),
    ],
)
def test_the_monthly_report_refuses_bad_input_with_exit_2_and_writes_nothing(
    stack_file_copy, tmp_path, capsys, args, message
):
    out = tmp_path / "reports"
    assert main(["report", "sla", "--file", str(stack_file_copy), "--out", str(out), *args]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_planned_work_refused_as_bad_input_leaves_no_window(stack):
    with pytest.raises(OperatorError), planned_work(stack, "up", "lgcloud up"):
        raise OperatorError("lgcloud:sites.center: bad", exit_code=EXIT_BAD_INPUT)
    assert maintenance_windows(stack) == []


def test_the_exporter_publishes_open_planned_work_for_each_municipality_it_covers(stack):
    from prometheus_client import CollectorRegistry

    from lgcloud.model.config import load_stack
    from lgcloud.observe.exporter import LabCollector

    cfg = load_stack("dev").model_copy(update={"stack": stack})
    registry = CollectorRegistry()
    registry.register(LabCollector(cfg, state_dir(stack) / "drills"))
    window = start_maintenance(stack, "OS patching", ["b-town"])
    labels = {"municipality": "b-town", "kind": "operator", "window": str(window.id)}
    assert registry.get_sample_value("lgcloud_maintenance_active", labels) == 1
    assert registry.get_sample_value("lgcloud_maintenance_active", {**labels, "municipality": "a-city"}) is None
    end_maintenance(stack, window.id)
    assert registry.get_sample_value("lgcloud_maintenance_active", labels) is None
