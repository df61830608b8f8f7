"""Monitoring as an SLM meeting uses it: every scrape target up, `lgcloud sla` met on a healthy
lab, a stopped app VM missing its availability target and firing its alert while the others stay
met, and the utilization report agreeing with `docker stats`."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time

import pytest

from lgcloud.model.calendar import JST
from lgcloud.model.config import load_stack
from lgcloud.model.naming import DRILL_SYSTEM, vm_resource
from lgcloud.observe.prometheus import Prometheus
from lgcloud.ops.access import ssh_config_path
from lgcloud.state.directory import state_dir
from lgcloud.state.facts import lab_facts

pytestmark = pytest.mark.live

STACK = "dev"
# The municipality whose app VM is stopped: not the one test_gateway stops, whose burn-rate alert
# may still fire for five minutes after that test.
VICTIM = "b-town"
CPU_TOLERANCE_VCPUS = 0.1  # report vs docker stats: both read the same cgroup, at different instants
MEMORY_TOLERANCE_MB = 24  # plus 10 % of the value


def lgcloud(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", *args, "--stack", STACK], capture_output=True, text=True, timeout=timeout
    )


def until(check, seconds: float, what: str, every: float = 3):
    """Call `check` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not within {seconds:.0f} s; last: {value!r}"
        time.sleep(every)


@pytest.fixture(scope="module")
def prometheus(configured):
    result = lgcloud("exporter", "--detach")  # what `make up` starts
    assert result.returncode == 0, result.stderr
    return Prometheus(lab_facts(STACK).prometheus_url)


def expected_targets(lab) -> dict[str, int]:
    cfg = load_stack(STACK)
    probed = sum(1 for m in cfg.municipalities for s in lab_facts(STACK).probed_systems if s in m.services)
    return {
        "prometheus": 1,
        "node": len(lab.vms),
        "postgresql": 2 * len(cfg.municipalities),
        "haproxy": 2,
        "probe": probed,
        "lgcloud": 1,
        "portal": 1,
    }


@pytest.mark.parametrize("job", ["prometheus", "node", "postgresql", "haproxy", "probe", "lgcloud", "portal"])
def test_every_scrape_target_is_up(prometheus, lab, job):
    wanted = expected_targets(lab)[job]

    def up():
        found = prometheus.query(f'up{{job="{job}"}}')
        return found if len(found) == wanted and all(v == 1 for _, v in found) else None

    until(up, 60, f"{wanted} {job} target(s) up")


def test_each_office_reaches_its_own_service_by_name(prometheus):
    cfg = load_stack(STACK)

    def answered():
        found = {labels["municipality"]: v for labels, v in prometheus.query('probe_success{job="probe"}')}
        return found if found == {m.id: 1.0 for m in cfg.municipalities} else None

    until(answered, 60, "probe_success 1 from every office")


def test_replication_lag_is_measured_for_every_municipality(prometheus):
    cfg = load_stack(STACK)

    def measured():
        found = {labels["municipality"]: v for labels, v in prometheus.query("municipality:postgresql_rpo_seconds:max")}
        return found if set(found) == {m.id for m in cfg.municipalities} else None

    found = until(measured, 60, "an RPO measurement per municipality")
    sync = [m.id for m in cfg.municipalities if m.replication == "sync"]
    assert all(found[m] == 0 for m in sync), f"synchronous municipalities report a lag: {found}"


def sla(window: str, *args: str) -> tuple[int, list[dict]]:
    result = lgcloud("sla", "--window", window, "--json", *args)
    assert result.returncode != 2, result.stderr
    return result.returncode, json.loads(result.stdout)["results"]


def test_sla_is_met_on_a_healthy_lab(prometheus):
    drills = list((state_dir(STACK) / "drills").glob("latest-*.json"))

    def healthy():
        code, rows = sla("1m")
        evaluated = [r for r in rows if r["status"] != "not served"]
        measured = [r for r in evaluated if r["objective"] != "rto"]
        if all(r["status"] == "met" for r in measured):
            return code, evaluated
        return None

    code, rows = until(healthy, 120, "every availability, latency and RPO target met", every=5)
    rto = {r["status"] for r in rows if r["objective"] == "rto" and r["system"] == DRILL_SYSTEM}
    # The drills watch 住民記録 recover, and site-loss the linkage as Ｂ町's 税 sees it; no figure
    # stands for the other systems' recovery, nor for the linkage elsewhere.
    linkage = [r for r in rows if r["objective"] == "rto" and r["system"] == "linkage"]
    assert {r["status"] for r in linkage} <= {"met", "no data"}, linkage
    unwatched = {r["status"] for r in rows if r["objective"] == "rto" and r["system"] != DRILL_SYSTEM}
    assert unwatched <= {"met", "no data"}, rows
    if drills:
        assert rto == {"met"} and code == (3 if "no data" in unwatched else 0), rows
    else:  # no drill has run on this lab: RTO cannot be evaluated, and says so
        assert code == 3 and rto == {"no data"}, rows


def test_after_bring_up_availability_is_met_or_not_enough_data_never_missed(prometheus):
    # Over each target's own window (30 days): bring-up is not in service, drills and configure
    # are planned work, and a lab hours old has not enough data to be judged either way.
    result = lgcloud("sla", "--json")
    rows = [r for r in json.loads(result.stdout)["results"] if r["objective"] == "availability"]
    served = [r for r in rows if r["status"] != "not served"]
    assert served and {r["status"] for r in served} <= {"met", "not enough data"}, served
    measured = [r for r in served if r["measured"] is not None]  # a minute after configure: none yet
    assert all(r["raw_percent"] is not None and r["budget_left_minutes"] > 0 for r in measured), served
    in_service = json.loads((state_dir(STACK) / "in-service.json").read_text())
    assert set(in_service) == {m.id for m in load_stack(STACK).municipalities}, in_service


def incidents(municipality: str, window: str = "15m") -> list[dict]:
    result = lgcloud("incident", "list", "--window", window, "--municipality", municipality, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def availability_of(municipality: str, system: str, window: str) -> dict:
    _, rows = sla(window, "--municipality", municipality)
    return next(r for r in rows if r["objective"] == "availability" and r["system"] == system)


def alerts(prometheus_url_: str) -> list[dict]:
    import urllib.request

    with urllib.request.urlopen(f"{prometheus_url_}/api/v1/alerts", timeout=5) as response:
        return json.load(response)["data"]["alerts"]


def firing(url: str, alertname: str) -> set[str]:
    """Municipalities for which `alertname` fires now."""
    return {
        a["labels"].get("municipality", "")
        for a in alerts(url)
        if a["labels"]["alertname"] == alertname and a["state"] == "firing"
    }


@pytest.fixture
def stopped_app(prometheus):
    # Precondition: every office sees its service healthy, and the victim's budget is not burning;
    # without it "the others stay met" and "it fires for the victim" could not be judged.
    url = lab_facts(STACK).prometheus_url

    def baseline():
        _, rows = sla("1m")
        availability = {
            r["municipality"]: r["status"]
            for r in rows
            if r["objective"] == "availability" and r["status"] != "not served"
        }
        return set(availability.values()) == {"met"} and VICTIM not in firing(url, "SlaAvailabilityBurnRate")

    until(baseline, 180, f"a healthy baseline: every office served, {VICTIM}'s budget not burning", every=10)
    container = vm_resource(STACK, f"{VICTIM}-app")
    subprocess.run(["docker", "stop", "-t", "2", container], check=True, capture_output=True)
    try:
        yield VICTIM
    finally:
        subprocess.run(["docker", "start", container], check=True, capture_output=True)
        until(
            lambda: prometheus.query(f'probe_success{{job="probe", municipality="{VICTIM}"}} == 1'),
            120,
            f"{VICTIM}'s service answering again after its app VM started",
        )


def test_a_stopped_app_vm_misses_its_availability_and_fires_its_alert(stopped_app, prometheus):
    def missed():
        _, rows = sla("1m")
        availability = {
            r["municipality"]: r["status"]
            for r in rows
            if r["objective"] == "availability" and r["status"] != "not served"
        }
        return availability if availability.get(stopped_app) == "missed" else None

    availability = until(missed, 60, f"{stopped_app}'s availability missed", every=5)
    others = {m: s for m, s in availability.items() if m != stopped_app}
    assert set(others.values()) == {"met"}, f"the others should stay met: {availability}"

    url = lab_facts(STACK).prometheus_url

    def fires_for_the_victim() -> set[str]:
        found = firing(url, "SlaAvailabilityBurnRate")
        return found if stopped_app in found else set()

    # Others may fire too (an earlier test's outage, or a loaded host: one failed 5 s probe in 5
    # minutes already burns a 99.9 % budget 14.4 times over); their availability staying met is
    # asserted above.
    until(fires_for_the_victim, 150, f"SlaAvailabilityBurnRate firing for {stopped_app}", every=5)
    runbooks = {
        a["annotations"]["runbook_url"] for a in alerts(url) if a["labels"]["alertname"] == "SlaAvailabilityBurnRate"
    }
    assert runbooks == {"docs/runbooks.md#slaavailabilityburnrate"}, runbooks

    # The outage is an incident of the municipality's own system, with the alert that fired for it.
    def listed():
        found = [i for i in incidents(stopped_app) if i["system"] == DRILL_SYSTEM]
        return found if found and "SlaAvailabilityBurnRate" in found[-1]["alerts"] else None

    (*_, incident) = until(listed, 30, f"an incident of {stopped_app}/{DRILL_SYSTEM} naming its alert", every=5)
    assert incident["counted_seconds"] > 0 and incident["id"].startswith(f"{stopped_app}-{DRILL_SYSTEM}-"), incident
    noted = lgcloud("incident", "note", incident["id"], "app VM stopped by the SLA test")
    assert noted.returncode == 0, noted.stderr
    assert "app VM stopped by the SLA test" in next(
        i["notes"] for i in incidents(stopped_app) if i["id"] == incident["id"]
    )


# The municipality whose app VM is stopped inside a maintenance window: neither VICTIM (whose
# incident the test above looks for) nor the one test_gateway stops.
PLANNED = "c-village"


def test_the_same_stop_inside_a_maintenance_window_lowers_raw_availability_only(prometheus):
    until(
        lambda: prometheus.query(f'min(probe_success{{job="probe", municipality="{PLANNED}"}}) == 1'),
        120,
        f"{PLANNED} served before its maintenance",
    )
    started = time.time()
    opened = lgcloud("maintenance", "start", "--reason", "app VM patching (SLA test)", "--municipality", PLANNED)
    assert opened.returncode == 0, opened.stderr
    container = vm_resource(STACK, f"{PLANNED}-app")
    try:
        subprocess.run(["docker", "stop", "-t", "2", container], check=True, capture_output=True)
        until(lambda: availability_of(PLANNED, DRILL_SYSTEM, "2m")["raw_percent"] < 100, 60, "raw availability falling")
    finally:
        subprocess.run(["docker", "start", container], check=True, capture_output=True)
        until(
            lambda: prometheus.query(f'min(probe_success{{job="probe", municipality="{PLANNED}"}}) == 1'),
            120,
            f"{PLANNED}'s service answering again after its app VM started",
        )
        closed = lgcloud("maintenance", "end", "--municipality", PLANNED)
        assert closed.returncode == 0, closed.stderr
    window = f"{int(time.time() - started) + 30}s"
    row = availability_of(PLANNED, DRILL_SYSTEM, window)
    assert row["raw_percent"] < 100 and row["measured"] == 100.0, row
    assert [i for i in incidents(PLANNED, window) if i["start"] >= started] == [], "planned work is no incident"
    listed = lgcloud("maintenance", "list", "--json")
    (mine,) = [
        w for w in json.loads(listed.stdout) if w["reason"] == "app VM patching (SLA test)" and w["start"] >= started
    ]
    assert mine["municipalities"] == [PLANNED] and mine["end"] > mine["start"], mine


def docker_stats(containers: list[str]) -> dict[str, tuple[float, float]]:
    """vCPUs and MiB per container, as `docker stats` shows them."""
    output = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}", *containers],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    stats = {}
    for line in output.splitlines():
        row = json.loads(line)
        used = row["MemUsage"].split("/")[0].strip()
        number = used.rstrip("KMGiB")
        stats[row["Name"]] = (float(row["CPUPerc"].rstrip("%")) / 100, float(number) * units[used[len(number) :]])
    return stats


def test_the_utilization_report_agrees_with_docker_stats(prometheus, tmp_path):
    busy, idle = f"{VICTIM}-app", "c-village-db"
    names = {vm_resource(STACK, n): n for n in (busy, idle)}
    # A busy loop on one app VM (capped at its allocation): a clear CPU figure to compare. Once it
    # runs, wait out the recording rule's 1-minute rate so that the report sees only the loop.
    loop = subprocess.Popen(
        ["ssh", "-F", str(ssh_config_path(STACK)), busy, "timeout 150 sh -c 'while :; do :; done'"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    container = vm_resource(STACK, busy)
    try:
        until(lambda: docker_stats([container])[container][0] > 0.1, 90, f"the loop running on {busy}", every=1)
        time.sleep(62)
        samples = [docker_stats(list(names)) for _ in range(3)]
        result = lgcloud("report", "utilization", "--window", "15s", "--out", str(tmp_path), timeout=180)
    finally:
        loop.terminate()
        subprocess.run(
            ["ssh", "-F", str(ssh_config_path(STACK)), busy, "pkill -f 'while :; do :; done' || true"],
            capture_output=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "utilization.html").stat().st_size > 10_000
    report = {v["vm"]: v for v in json.loads((tmp_path / "utilization.json").read_text())["vms"]}
    for container, name in names.items():
        cpu = sum(s[container][0] for s in samples) / len(samples)
        memory = sum(s[container][1] for s in samples) / len(samples)
        got = report[name]
        assert abs(got["cpu_avg_vcpus"] - cpu) <= CPU_TOLERANCE_VCPUS, (name, got["cpu_avg_vcpus"], cpu)
        assert abs(got["memory_avg_mb"] - memory) <= MEMORY_TOLERANCE_MB + 0.1 * memory, (
            name,
            got["memory_avg_mb"],
            memory,
        )
    assert report[busy]["cpu_avg_vcpus"] > report[idle]["cpu_avg_vcpus"], (report[busy], report[idle])


def test_the_monthly_report_renders_every_section_on_pages_that_are_not_blank(prometheus, tmp_path):
    from matplotlib import image

    month = datetime.datetime.now(JST).strftime("%Y-%m")
    result = lgcloud("report", "sla", "--month", month, "--municipality", VICTIM, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    html = (tmp_path / f"sla-{month}-{VICTIM}.html").read_text(encoding="utf-8")
    for section in (
        "サービスレベルの概要",
        "日別の推移",
        "障害",
        "計画停止",
        "災害対策訓練",
        "バックアップ",
        "利用状況と費用按分",
    ):
        assert section in html, section
    listed = [i["id"] for i in incidents(VICTIM, "31d") if i["start"] >= month_start(month)]
    assert all(i in html for i in listed), listed
    pdf = tmp_path / f"sla-{month}-{VICTIM}.pdf"
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "サービスレベル月次報告書" in text and "稼働率（契約）" in text, text[:500]
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert pages, "no page rendered"
    for page in pages:
        pixels = image.imread(page)[..., :3]
        drawn = (pixels.mean(axis=2) < 0.9).mean()  # share of pixels that are not paper
        assert drawn > 0.01, f"{page.name} is blank ({drawn:.2%} drawn)"
    # No number of a person in what goes to the 参加団体 (a 住民票コード is 11 digits, a 個人番号 12).
    for path in tmp_path.glob(f"sla-{month}-{VICTIM}.*"):
        if path.suffix in (".html", ".json"):
            text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", path.read_text(encoding="utf-8"))  # the chart
            assert not re.search(r"(?<![\d.])\d{11,12}(?![\d.])", text), path.name


def month_start(month: str) -> float:
    return datetime.datetime(int(month[:4]), int(month[5:]), 1, tzinfo=JST).timestamp()
