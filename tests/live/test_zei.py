"""税 (個人住民税) in the live lab: a second business system on every app VM, behind the gateway at
zei.<id>.lgwan.test, with the clerks' one sign-in. A declared income is assessed and registered as a
副本; a resident who moved in this 年度 is assessed on the income the former municipality provides
through the 中間サーバー and the broker, with the 情報提供等記録 on both sides. Everything is done
from the offices' terminals, as a clerk does.
"""

from __future__ import annotations

import json
import time

import pytest

from lgcloud.model.topology import plan

from .offices import call, session
from .test_jumin import TODAY, person
from .test_linkage import linked

pytestmark = pytest.mark.live

FISCAL_YEAR = TODAY.year  # the 年度 now: assessed on the income of the year before
INCOME_YEAR = FISCAL_YEAR - 1
# The role's defaults: 均等割 5,000; 所得割 10 % of the 所得 less 430,000 (to 1,000 yen, then to 100).
INCOME, TAX = 3_600_000, 5_000 + 317_000
PSQL = "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1"


def zei(vm, m: str, method: str, path: str, body=None, **kwargs):
    return call(vm(f"{m}-terminal"), m, method, path, body, system="zei", **kwargs)


def jumin(vm, m: str, method: str, path: str, body=None):
    return call(vm(f"{m}-terminal"), m, method, path, body)


def registered(vm, m: str, **fields) -> dict:
    answer = jumin(vm, m, "POST", "/api/residents", person(**fields))
    assert answer.status == 201, answer.text
    return answer.json()["resident"]


def fuhon(db, atena_number: str, item: str, timeout: float = 60) -> dict:
    """The 副本 the municipality's tenant of the 中間サーバー holds, once atena-link sent it."""
    query = f"SELECT value FROM chukan.fuhon WHERE atena_number = '{atena_number}' AND item = '{item}'"
    deadline = time.monotonic() + timeout
    while not (held := db.check_output(f'{PSQL} -d chukan -c "{query}"').strip()):
        assert time.monotonic() < deadline, f"no 副本 {item} of {atena_number} after {timeout:.0f}s"
        time.sleep(1)
    return json.loads(held)


@pytest.fixture(scope="module")
def dbs(configured, vm, dev):
    return {m.id: vm(f"{m.id}-db") for m in dev.municipalities}


@pytest.mark.municipalities
def test_zei_answers_from_the_primary_behind_the_gateway(configured, vm, m):
    answer = zei(vm, m.id, "GET", "/healthz")
    assert answer.status == 200 and answer.json() == {
        "municipality_code": m.code,
        "status": "ok",
        "database": "primary",
    }, answer.text


def test_a_declared_income_is_assessed_and_registered_as_fuhon(configured, vm, dbs):
    """The session 住民記録 began serves 税: one sign-in for the municipality's systems."""
    resident = registered(vm, "a-city")
    declared = zei(
        vm, "a-city", "POST", f"/api/residents/{resident['ref']}/income", {"year": INCOME_YEAR, "income": INCOME}
    )
    assert declared.status == 201, declared.text
    answer = zei(vm, "a-city", "POST", f"/api/residents/{resident['ref']}/assessment", {"fiscal_year": FISCAL_YEAR})
    assert answer.status == 201, answer.text
    assessment = answer.json()["assessment"]
    assert (assessment["income"], assessment["per_capita"], assessment["income_levy"], assessment["tax"]) == (
        INCOME,
        5_000,
        317_000,
        TAX,
    )
    assert answer.json()["income"] == {"source": "申告", "provided_by": None, "request_id": None}
    held = zei(vm, "a-city", "GET", f"/api/residents/{resident['ref']}/tax").json()
    assert [(i["income_year"], i["income"], i["source"]) for i in held["incomes"]] == [(INCOME_YEAR, INCOME, "申告")]
    assert [(a["fiscal_year"], a["tax"], a["assessed_by"]) for a in held["assessments"]] == [
        (FISCAL_YEAR, TAX, "kunren01")
    ]
    # Both 副本 reach the municipality's tenant of the 中間サーバー.
    atena_number = resident["atena_number"]
    assert fuhon(dbs["a-city"], atena_number, "前年の所得") == {"年分": INCOME_YEAR, "所得": INCOME}
    assert fuhon(dbs["a-city"], atena_number, "前年の課税情報") == {"年度": FISCAL_YEAR, "所得": INCOME, "税額": TAX}
    # Every look was recorded, for 地方税の賦課徴収に関する事務, naming the clerk.
    records = (
        dbs["a-city"]
        .check_output(
            f"{PSQL} -d jumin -c \"SELECT action || ':' || purpose || ':' || clerk FROM audit.access_records"
            f" WHERE resident_code = '{resident['resident_code']}' AND purpose = 'zei' ORDER BY id\""
        )
        .split()
    )
    assert records == ["income:zei:kunren01", "assessment:zei:kunren01", "tax:zei:kunren01"], records


def test_a_resident_who_moved_in_is_assessed_on_the_former_municipality_income(configured, vm, dbs, dev):
    """The seed's 番号連携: Ｂ町 assesses a person who moved from Ａ市 this year on the income Ａ市
    holds, asked through the 中間サーバー and the broker; neither 個人番号 nor 住民票コード travels."""
    a_city, b_town = dev.municipality("a-city"), dev.municipality("b-town")
    at_a = registered(vm, "a-city", address=f"{a_city.name}本町1-1")
    assert (
        zei(
            vm, "a-city", "POST", f"/api/residents/{at_a['ref']}/income", {"year": INCOME_YEAR, "income": INCOME}
        ).status
        == 201
    )
    fuhon(dbs["a-city"], at_a["atena_number"], "前年の所得")
    moved = jumin(
        vm,
        "a-city",
        "POST",
        f"/api/residents/{at_a['ref']}/move-out",
        {"event_date": TODAY.isoformat(), "destination": b_town.name},
    )
    assert moved.status == 200, moved.text
    at_b = registered(
        vm,
        "b-town",
        resident_code=at_a["resident_code"],
        my_number=at_a["my_number"],
        previous_address=f"{a_city.name}本町1-1",
        event_date=TODAY.isoformat(),
    )
    linked(dbs["b-town"], at_b["atena_number"])
    linked(dbs["a-city"], at_a["atena_number"], residence="former")

    answer = zei(vm, "b-town", "POST", f"/api/residents/{at_b['ref']}/assessment", {"fiscal_year": FISCAL_YEAR})
    assert answer.status == 201, answer.text
    assert answer.json()["assessment"]["tax"] == TAX
    income = answer.json()["income"]
    assert (income["source"], income["provided_by"]) == ("前住所地", a_city.code), income
    # Both sides recorded the exchange under the request's id: Ｂ町 asked, Ａ市 provided.
    request_id = income["request_id"]
    for m, side in (("b-town", "requester"), ("a-city", "provider")):
        query = f"SELECT record FROM chukan.records WHERE record::jsonb ->> 'request_id' = '{request_id}'"
        kept = dbs[m].check_output(f'{PSQL} -d chukan -c "{query}"')
        record = json.loads(kept)
        assert (record["side"], record["outcome"], record["office"], record["items"]) == (
            side,
            "provided",
            "個人住民税の賦課",
            ["前年の所得"],
        ), record
        assert at_a["my_number"] not in kept and at_a["resident_code"] not in kept
    # Ｂ町 keeps the provided income with the request it came by, and registers it as its own 副本.
    held = zei(vm, "b-town", "GET", f"/api/residents/{at_b['ref']}/tax").json()["incomes"]
    assert [(i["income_year"], i["income"], i["source"], i["request_id"]) for i in held] == [
        (INCOME_YEAR, INCOME, "前住所地", request_id)
    ]
    assert fuhon(dbs["b-town"], at_b["atena_number"], "前年の課税情報")["税額"] == TAX


def test_a_former_municipality_that_never_held_the_person_provides_nothing(configured, vm, dbs, dev):
    """Ｃ村 names Ａ市 as the 前住所 of someone Ａ市 never registered: refused, nothing assessed."""
    newcomer = registered(
        vm, "c-village", previous_address=f"{dev.municipality('a-city').name}本町9-9", event_date=TODAY.isoformat()
    )
    linked(dbs["c-village"], newcomer["atena_number"])
    answer = zei(vm, "c-village", "POST", f"/api/residents/{newcomer['ref']}/assessment", {"fiscal_year": FISCAL_YEAR})
    assert answer.status == 403 and answer.json()["field"] == "former_municipality", answer.text
    assert zei(vm, "c-village", "GET", f"/api/residents/{newcomer['ref']}/tax").json()["assessments"] == []


@pytest.fixture(scope="module")
def born(configured, vm) -> dict:
    """A resident of Ａ市 by birth: no income anywhere."""
    return registered(vm, "a-city", event="birth", birth_date=TODAY.isoformat(), event_date=None, previous_address=None)


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("income", {"year": str(INCOME_YEAR), "income": 1}, 400, "year"),
        ("income", {"year": FISCAL_YEAR, "income": 1}, 400, "year"),  # a year not yet ended
        ("income", {"year": INCOME_YEAR, "income": -1}, 400, "income"),
        ("income", {"year": INCOME_YEAR, "income": True}, 400, "income"),
        ("income", {"year": INCOME_YEAR, "income": 1, "my_number": "1"}, 400, "my_number"),
        ("assessment", {"fiscal_year": FISCAL_YEAR + 1}, 400, "fiscal_year"),
        ("assessment", {"fiscal_year": 2026.0}, 400, "fiscal_year"),
        ("assessment", {"fiscal_year": FISCAL_YEAR}, 409, "fiscal_year"),  # no income held, not moved in
        ("assessment", {"fiscal_year": FISCAL_YEAR, "former_municipality": "12"}, 400, "former_municipality"),
        ("assessment", b"[]", 400, "body"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field_and_writes_nothing(configured, vm, born, path, body, status, field):
    answer = zei(vm, "a-city", "POST", f"/api/residents/{born['ref']}/{path}", body)
    assert (answer.status, answer.json()["field"]) == (status, field), answer.text
    assert zei(vm, "a-city", "GET", f"/api/residents/{born['ref']}/tax").json() == {
        "municipality_code": "012025",
        "incomes": [],
        "assessments": [],
    }


def test_an_unknown_or_coded_ref_is_404(configured, vm, born):
    for ref in ("00000000-0000-0000-0000-000000000000", born["resident_code"], born["my_number"]):
        answer = zei(vm, "a-city", "GET", f"/api/residents/{ref}/tax")
        assert (answer.status, answer.json()["field"]) == (404, "ref"), answer.text


def test_an_assessment_is_made_once(configured, vm):
    resident = registered(vm, "a-city")
    zei(vm, "a-city", "POST", f"/api/residents/{resident['ref']}/income", {"year": INCOME_YEAR, "income": 100_000})
    first = zei(vm, "a-city", "POST", f"/api/residents/{resident['ref']}/assessment", {"fiscal_year": FISCAL_YEAR})
    assert first.status == 201 and first.json()["assessment"]["tax"] == 0, first.text  # under the exemption
    again = zei(vm, "a-city", "POST", f"/api/residents/{resident['ref']}/assessment", {"fiscal_year": FISCAL_YEAR})
    assert (again.status, again.json()["field"]) == (409, "fiscal_year"), again.text


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_no_session_no_tax(configured, vm, born, token):
    answer = zei(vm, "a-city", "GET", f"/api/residents/{born['ref']}/tax", token=token)
    assert (answer.status, answer.json()["field"]) == (401, "session"), answer.text


def test_an_administrator_sees_no_tax(configured, vm, born):
    answer = zei(vm, "a-city", "GET", f"/api/residents/{born['ref']}/tax", token=session("a-city", "kanri01"))
    assert (answer.status, answer.json()["field"]) == (403, "role"), answer.text


def test_the_standby_zei_reads_the_replica(configured, vm, dev):
    """At the backup site 税 waits on the replica, ready for a failover."""
    topology = plan(dev)
    address = topology.vm("a-city-app-standby").addresses["a-city-backup"]
    host = vm("a-city-app-standby")
    health = json.loads(host.check_output(f"curl -sS --max-time 10 http://{address}:8081/healthz"))
    assert health["database"] == "read-only replica", health
