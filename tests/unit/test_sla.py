"""SLA targets: their validation in the stack config, and how what Prometheus measured is judged
(typed measurements here; the queries themselves are proven against the lab's Prometheus in
tests/live/test_sla.py)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import yaml

from lgcloud.cli import main
from lgcloud.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_EVALUATED, OperatorError
from lgcloud.model.config import ConfigInvalid, load_stack, parse, read_file, stack_file
from lgcloud.observe.prometheus import Prometheus
from lgcloud.observe.sla import Measurements, SlaReport, evaluate, judge, judge_all, queries
from lgcloud.observe.slm import Availability

SERVED = ("jumin",)  # what the dev lab's offices probe


@pytest.fixture(scope="module")
def dev():
    return load_stack("dev")


def values_with(change: dict) -> dict:
    values = copy.deepcopy(read_file(stack_file("dev")))
    for key, value in change.items():
        node = values
        *path, last = key.split(".")
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return values


def problems(change: dict) -> list[str]:
    with pytest.raises(ConfigInvalid) as caught:
        parse(values_with(change), "dev")
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


# --- targets in the stack config ---------------------------------------------------------------


def test_the_stack_targets_apply_where_a_municipality_states_none(dev):
    target = dev.sla_for(dev.municipality("a-city"), "jumin")
    assert (target.availability_percent, target.rpo_seconds, target.window) == (99.9, 0, "30d"), target


def test_a_municipality_overrides_only_the_keys_it_states(dev):
    target = dev.sla_for(dev.municipality("c-village"), "jumin")
    assert (target.rpo_seconds, target.availability_percent) == (5, 99.9), target


def test_without_a_stack_sla_the_standard_levels_apply():
    values = values_with({})
    values.pop("sla")
    for m in values["municipalities"]:
        m.pop("sla", None)
    cfg = parse(values, "dev")
    target = cfg.sla_for(cfg.municipalities[0], "jumin")
    assert (target.availability_percent, target.rto_seconds, target.rpo_seconds) == (99.5, 12 * 3600, 86400)


@pytest.mark.parametrize(
    "key, value, path",
    [
        ("sla.window", "30x", "lgcloud:sla.window"),
        ("sla.window", "0d", "lgcloud:sla.window"),
        ("sla.availability_percent", 100.5, "lgcloud:sla.availability_percent"),
        ("sla.latency_p95_ms", 0, "lgcloud:sla.latency_p95_ms"),
        ("sla.rpo_seconds", -1, "lgcloud:sla.rpo_seconds"),
        ("sla.uptime", 99, "lgcloud:sla.uptime"),
        ("municipalities.2.sla", {"kokuho": {"rpo_seconds": 5}}, "lgcloud:municipalities[2].sla"),
        ("municipalities.2.sla", {"jumin": {"window": "soon"}}, "lgcloud:municipalities[2].sla.jumin.window"),
    ],
)
def test_a_bad_target_is_refused_with_its_key_path(key, value, path):
    found = problems({key: value})
    assert any(p.startswith(path + ":") for p in found), found


def test_validate_refuses_a_bad_target_with_exit_2(tmp_path, capsys):
    document = yaml.safe_load(stack_file("dev").read_text(encoding="utf-8"))
    document["config"]["lgcloud:sla"]["window"] = "a month"
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    assert main(["validate", "--file", str(path), "--offline"]) == 2
    assert "lgcloud:sla.window" in capsys.readouterr().err


# --- judging one measurement --------------------------------------------------------------------


@pytest.mark.parametrize(
    "objective, target, measured, status, margin",
    [
        ("availability", 99.9, 99.95, "met", 0.05),
        ("availability", 99.9, 99.9, "met", 0.0),
        ("availability", 99.9, 98.0, "missed", -1.9),
        ("latency_p95", 500, 120, "met", 380),
        ("latency_p95", 500, 501, "missed", -1),
        ("rpo", 0, 0, "met", 0),
        ("rpo", 5, 7.5, "missed", -2.5),
        ("rto", 30, 12, "met", 18),
    ],
)
def test_a_measurement_is_met_or_missed_with_its_margin(objective, target, measured, status, margin):
    got_status, got_margin = judge(objective, target, measured)
    assert got_status == status and got_margin == pytest.approx(margin), (objective, got_status, got_margin)


def test_no_measurement_is_no_data_never_met():
    assert judge("availability", 99.9, None) == ("no data", None)


def test_every_query_covers_the_window_asked_for():
    for name, expr in queries("17m").items():
        # the last drills; the age now
        assert "[17m]" in expr or name in ("probing", "rto", "linkage_rto", "backup_age"), (name, expr)


# --- judging what was measured -------------------------------------------------------------------

HOUR = 3600.0


def availability(m: str, system: str, percent: float, measured: float = HOUR, service: float = HOUR):
    """An hour's contractual availability as Prometheus's probes gave it."""
    return Availability(
        municipality=m,
        system=system,
        target_percent=99.9,
        start=0.0,
        end=service,
        service_seconds=service,
        measured_seconds=measured,
        contractual_percent=percent,
        raw_percent=percent,
        downtime_seconds=(1 - percent / 100) * measured,
        probes=int(measured / 5),
    )


def healthy(cfg, systems=("jumin",), **overrides) -> Measurements:
    kinds = {
        "availability": {(m.id, s): availability(m.id, s, 100.0) for m in cfg.municipalities for s in systems},
        "latency_p95": {(m.id, s): 12.0 for m in cfg.municipalities for s in systems},
        "rpo": {m.id: 0.0 for m in cfg.municipalities},
        "rto": {m.id: 9.0 for m in cfg.municipalities},
        "linkage_rto": {},
        "backup_age": {m.id: 3600.0 for m in cfg.municipalities},
        "undeclared": {},
    }
    for kind, values in overrides.items():
        kinds[kind] = {**kinds[kind], **values}
    return Measurements(**kinds)


def rows_of(cfg, measured, window="1h", municipalities=(), served=SERVED):
    """The evaluation of every target, and the exit code `lgcloud sla` gives it."""
    chosen = [m for m in cfg.municipalities if not municipalities or m.id in municipalities]
    # The dev stack's targets are all over 30 days, unless a window is asked for.
    windows = measured if isinstance(measured, str) else {window or "30d": measured}
    rows = judge_all(cfg, chosen, served, window, windows)
    return rows, SlaReport(cfg.stack, "http://test", rows).exit_code


def statuses(rows, municipality=None, objective=None) -> set[str]:
    return {
        r.status
        for r in rows
        if r.system == "jumin" and municipality in (None, r.municipality) and objective in (None, r.objective)
    }


def test_a_healthy_lab_meets_every_target(dev):
    rows, code = rows_of(dev, healthy(dev), "1h")
    assert statuses(rows) == {"met"} and code == 0, [(r.municipality, r.objective, r.status) for r in rows]


def test_a_backup_older_than_one_and_a_half_intervals_is_missed_for_its_municipality(dev):
    rows, code = rows_of(dev, healthy(dev, backup_age={"b-town": 1.6 * 86400}), "1h")
    backups = {r.municipality: r for r in rows if r.objective == "backup_age"}
    assert set(backups) == {m.id for m in dev.municipalities}
    assert backups["b-town"].status == "missed" and backups["b-town"].target == 1.5 * 86400
    assert backups["a-city"].status == "met" and backups["a-city"].margin == 1.5 * 86400 - 3600
    assert code == EXIT_FAILED


def test_systems_the_lab_does_not_serve_are_not_served_and_never_met(dev):
    rows, code = rows_of(dev, healthy(dev), "1h")
    unserved = {r.status for r in rows if r.system not in ("jumin", "db")}
    assert unserved == {"not served"}, unserved


def test_a_missed_target_fails_only_its_municipality(dev):
    rows, code = rows_of(dev, healthy(dev, availability={("a-city", "jumin"): availability("a-city", "jumin", 97.0)}))
    assert statuses(rows, "a-city", "availability") == {"missed"}
    assert statuses(rows, "b-town") == {"met"} and statuses(rows, "c-village") == {"met"}
    assert code == EXIT_FAILED


def test_availability_shows_raw_beside_contractual_and_the_budget_left_in_minutes(dev):
    a = replace(availability("a-city", "jumin", 99.95), raw_percent=97.0)
    rows, _ = rows_of(dev, healthy(dev, availability={("a-city", "jumin"): a}))
    row = next(r for r in rows if (r.municipality, r.system, r.objective) == ("a-city", "jumin", "availability"))
    assert (row.status, row.measured, row.raw_percent) == ("met", 99.95, 97.0), row
    # 0.1 % of an hour is 3.6 s of budget; 0.05 % of it is spent.
    assert row.budget_left_minutes == pytest.approx(1.8 / 60), row


def test_a_window_mostly_before_the_service_began_is_not_enough_data_never_met(dev):
    # In service for the last hour of a 30-day window: nothing failed, and still nothing is judged.
    young = availability("b-town", "jumin", 100.0, measured=HOUR, service=30 * 24 * HOUR)
    rows, code = rows_of(dev, healthy(dev, availability={("b-town", "jumin"): young}), None)
    row = next(r for r in rows if (r.municipality, r.system, r.objective) == ("b-town", "jumin", "availability"))
    assert row.status == "not enough data" and "60.0 min of 30.0 d" in row.detail, row
    assert code == EXIT_NOT_EVALUATED


def test_downtime_beyond_the_whole_windows_budget_is_missed_on_little_data(dev):
    # 30 days at 99.9 % allow 43.2 minutes; an hour in service with 50 minutes down has spent them.
    spent = availability("b-town", "jumin", 100 * 10 / 60, measured=HOUR, service=30 * 24 * HOUR)
    rows, code = rows_of(dev, healthy(dev, availability={("b-town", "jumin"): spent}), None)
    row = next(r for r in rows if (r.municipality, r.system, r.objective) == ("b-town", "jumin", "availability"))
    assert row.status == "missed" and row.budget_left_minutes == pytest.approx(43.2 - 50), row
    assert code == EXIT_FAILED


def test_a_municipality_not_yet_in_service_has_no_data(dev):
    none_yet = replace(availability("c-village", "jumin", 100.0, measured=0), contractual_percent=None, probes=0)
    rows, code = rows_of(dev, healthy(dev, availability={("c-village", "jumin"): none_yet}))
    row = next(r for r in rows if (r.municipality, r.system, r.objective) == ("c-village", "jumin", "availability"))
    assert row.status == "no data" and "not in service yet" in row.detail, row
    assert code == EXIT_NOT_EVALUATED


def test_a_municipality_just_put_into_service_without_a_probe_recorded_is_not_enough_data(dev):
    young = replace(availability("c-village", "jumin", 100.0, measured=20), contractual_percent=None, probes=0)
    rows, code = rows_of(dev, healthy(dev, availability={("c-village", "jumin"): young}))
    row = next(r for r in rows if (r.municipality, r.system, r.objective) == ("c-village", "jumin", "availability"))
    assert row.status == "not enough data" and "no probe recorded yet" in row.detail, row
    assert code == EXIT_NOT_EVALUATED


def test_a_municipality_in_service_without_any_probe_has_no_data(dev):
    silent = replace(availability("c-village", "jumin", 100.0), contractual_percent=None, probes=0)
    rows, _ = rows_of(dev, healthy(dev, availability={("c-village", "jumin"): silent}))
    row = next(r for r in rows if (r.municipality, r.system, r.objective) == ("c-village", "jumin", "availability"))
    assert row.status == "no data" and "prober" in row.detail, row


def test_the_async_municipality_is_held_to_its_own_rpo(dev):
    rows, code = rows_of(dev, healthy(dev, rpo={"c-village": 3.0, "a-city": 3.0}), "1h")
    assert statuses(rows, "c-village", "rpo") == {"met"} and statuses(rows, "a-city", "rpo") == {"missed"}


def test_missing_samples_are_no_data_and_not_met(dev):
    measured = replace(healthy(dev), rto={})
    rows, code = rows_of(dev, measured, "1h")
    assert statuses(rows, objective="rto") == {"no data"}
    assert code == EXIT_NOT_EVALUATED


def test_an_unreachable_prometheus_is_reported_for_every_target(dev):
    rows, code = rows_of(dev, "Prometheus at http://test does not answer (refused)", "1h")
    assert statuses(rows) == {"Prometheus unreachable"} and code == EXIT_NOT_EVALUATED


def test_probes_of_a_municipality_the_stack_does_not_declare_are_reported(dev):
    rows, code = rows_of(dev, healthy(dev, undeclared={("x-town", "jumin"): 100.0}), "1h")
    assert [r.status for r in rows if r.municipality == "x-town"] == ["unknown municipality"]
    assert code == EXIT_NOT_EVALUATED


def test_each_target_is_evaluated_over_its_own_window_unless_one_is_given(dev):
    own, _ = rows_of(dev, healthy(dev), None)
    given, _ = rows_of(dev, healthy(dev), "1h")
    assert {r.window for r in own if r.objective == "availability"} == {"30d"}
    assert {r.window for r in given if r.objective == "availability"} == {"1h"}


NOWHERE = Prometheus("http://127.0.0.1:9")  # were it asked, the answer would be "unreachable" rows


@pytest.mark.parametrize("window", ["", "5", "1y", "-1h", "0s"])
def test_a_bad_window_is_refused_before_asking(dev, window):
    with pytest.raises(OperatorError, match="--window") as refused:
        evaluate(dev, NOWHERE, SERVED, window)
    assert refused.value.exit_code == EXIT_BAD_INPUT


def test_an_unknown_municipality_is_refused_naming_the_known_ones(dev):
    with pytest.raises(OperatorError, match="a-city, b-town, c-village") as refused:
        evaluate(dev, NOWHERE, SERVED, "1h", ["d-town"])
    assert refused.value.exit_code == EXIT_BAD_INPUT


def test_the_cli_refuses_a_bad_window_with_exit_2(capsys):
    assert main(["sla", "--stack", "dev", "--window", "forever"]) == 2
    assert "--window" in capsys.readouterr().err


def test_a_drill_in_which_the_service_never_came_back_misses_the_rto(dev):
    rows, code = rows_of(dev, healthy(dev, rto={"b-town": float("inf")}), "1h")
    assert statuses(rows, "b-town", "rto") == {"missed"} and code == EXIT_FAILED


def test_a_second_system_is_judged_on_its_own_probes_and_no_drill_speaks_for_its_recovery(dev):
    measured = healthy(dev, ("jumin", "zei"), availability={("a-city", "zei"): availability("a-city", "zei", 98.0)})
    measured = replace(
        measured, latency_p95={**measured.latency_p95, **{(m.id, "zei"): 20.0 for m in dev.municipalities}}
    )
    rows, code = rows_of(dev, measured, "1h", served=("jumin", "zei"))
    zei = {(r.municipality, r.objective): r for r in rows if r.system == "zei"}
    assert zei[("a-city", "availability")].status == "missed" and zei[("b-town", "availability")].status == "met"
    assert zei[("b-town", "latency_p95")].measured == 20.0
    assert {zei[(m.id, "rto")].status for m in dev.municipalities} == {"no data"}
    assert "jumin" in zei[("a-city", "rto")].detail and code == EXIT_FAILED


def test_the_linkage_is_judged_on_its_probes_and_on_the_recovery_its_drill_watch_measured(dev):
    measured = healthy(dev, ("jumin", "linkage"), linkage_rto={"b-town": 7.8})
    rows, _ = rows_of(dev, measured, "1h", served=("jumin", "linkage"))
    linkage = {(r.municipality, r.objective): r for r in rows if r.system == "linkage"}
    assert {m for m, _ in linkage} == {m.id for m in dev.municipalities}  # every municipality's tenant
    assert linkage[("a-city", "availability")].status == "met"
    assert (linkage[("b-town", "rto")].status, linkage[("b-town", "rto")].measured) == ("met", 7.8)
    assert linkage[("a-city", "rto")].status == "no data" and "site-loss" in linkage[("a-city", "rto")].detail
