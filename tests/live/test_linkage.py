"""番号連携 in the live lab: 符号 per body from the broker, 副本 in each municipality's tenant of the
jointly used 中間サーバー, and a brokered query from Ｂ町 to Ａ市 after a move, with the
情報提供等記録 on every side. The municipalities' systems are played by curl on their app VMs (the
only callers the 中間サーバー admits); residents are registered through the office, as a clerk does.
"""

from __future__ import annotations

import base64
import json
import secrets
import shlex
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest

from lgcloud.model.topology import plan
from lgcloud.ops.lab import Lab
from lgcloud.state.secrets import stack_secrets

from .offices import call
from .roles import role_sql
from .test_jumin import TODAY, person

pytestmark = pytest.mark.live

TAX = "個人住民税の賦課"
FORMER = "former-municipality"
INCOME = "前年の所得"


@dataclass
class Reply:
    status: int
    body: dict


def chukan(host, address: str, method: str, path: str, body: dict | None = None) -> Reply:
    """A request from `host` (an app VM) to the 中間サーバー at `address`."""
    send = ""
    if body is not None:
        raw = base64.b64encode(json.dumps(body, ensure_ascii=False).encode()).decode()
        send = f"printf %s {raw} | base64 -d | curl -H 'Content-Type: application/json' --data-binary @- "
    else:
        send = "curl "
    result = host.run(
        f"out=$(mktemp); {send}-sS --max-time 20 -o \"$out\" -w '%{{http_code}}' -X {method} "
        f'{shlex.quote(f"http://{address}:8600{path}")}; echo; cat "$out"; rm -f "$out"'
    )
    assert result.rc == 0, result.stderr
    status, _, text = result.stdout.partition("\n")
    return Reply(int(status), json.loads(text) if text.strip() else {})


@pytest.fixture(scope="module")
def linkage(configured, vm, dev):
    """Per municipality: its app VM, the 中間サーバー's address on its segment, its primary."""
    topology = plan(dev)
    return {
        m.id: {
            "app": vm(f"{m.id}-app"),
            "chukan": topology.vm("chukan").addresses[f"{m.id}-center"],
            "db": vm(f"{m.id}-db"),
            "code": m.code,
        }
        for m in dev.municipalities
    }


def linked(db, atena_number: str, timeout: float = 60, residence: str = "current") -> None:
    """Wait until the municipality's tenant holds the 宛名番号's 符号 and knows the person's
    residence (the atena-link service)."""
    deadline = time.monotonic() + timeout
    query = f"SELECT count(*) FROM chukan.linked WHERE atena_number = '{atena_number}' AND residence = '{residence}'"
    while db.check_output(f'runuser -u postgres -- psql -XAtq -d chukan -c "{query}"').strip() != "1":
        assert time.monotonic() < deadline, f"{atena_number} got no 符号 in {timeout:.0f}s"
        time.sleep(1)


def register(m: str, dev, **fields) -> dict:
    answer = call_terminal(m, "POST", "/api/residents", person(**fields))
    assert answer.status == 201, answer.body
    return answer.json()["resident"]


def call_terminal(m: str, method: str, path: str, body=None):
    from .conftest import _host

    return call(_host(f"{m}-terminal"), m, method, path, body)


@pytest.fixture(scope="module")
def moved(linkage, dev):
    """The seed's scenario by hand: a resident of Ａ市 with last year's income as a 副本, moved to Ｂ町."""
    a, b = linkage["a-city"], linkage["b-town"]
    at_a = register("a-city", dev)
    linked(a["db"], at_a["atena_number"])
    fuhon = {
        "atena_number": at_a["atena_number"],
        "item": INCOME,
        "system": "zei",
        "value": {"年度": 2025, "所得": 3_600_000},
    }
    assert chukan(a["app"], a["chukan"], "POST", "/api/fuhon", fuhon).status == 201
    out = call_terminal(
        "a-city",
        "POST",
        f"/api/residents/{at_a['ref']}/move-out",
        {"event_date": TODAY.isoformat(), "destination": "Ｂ町"},
    )
    assert out.status == 200, out.body
    at_b = register("b-town", dev, resident_code=at_a["resident_code"], my_number=at_a["my_number"])
    linked(b["db"], at_b["atena_number"])
    linked(a["db"], at_a["atena_number"], residence="former")
    return at_a, at_b


def ask(linkage, m: str, atena_number: str, provider: str = "012025", office: str = TAX, items=(INCOME,), kind=FORMER):
    side = linkage[m]
    body = {
        "atena_number": atena_number,
        "office": office,
        "provider": provider,
        "provider_kind": kind,
        "items": list(items),
    }
    return chukan(side["app"], side["chukan"], "POST", "/api/query", body)


def broker_records(dev) -> list[dict]:
    """The broker's 情報提供等記録, read by the controller over mgmt as an operator."""
    address = plan(dev).vm("broker").addresses["mgmt"]
    with urllib.request.urlopen(f"http://{address}:8700/records?after=-1&limit=1000", timeout=10) as response:
        return [r["record"] for r in json.load(response)["records"]]


def test_a_move_in_gets_the_prior_income_from_the_former_municipality(linkage, moved, dev):
    _, at_b = moved
    answer = ask(linkage, "b-town", at_b["atena_number"])
    assert answer.status == 200, answer.body
    assert answer.body["items"] == {INCOME: {"年度": 2025, "所得": 3_600_000}}
    request_id = answer.body["request_id"]
    requested = chukan(
        linkage["b-town"]["app"], linkage["b-town"]["chukan"], "GET", f"/api/records?request_id={request_id}"
    )
    provided = chukan(
        linkage["a-city"]["app"], linkage["a-city"]["chukan"], "GET", f"/api/records?request_id={request_id}"
    )
    [mine], [theirs] = requested.body["records"], provided.body["records"]
    for record, side in ((mine["record"], "requester"), (theirs["record"], "provider")):
        assert (record["side"], record["outcome"], record["office"]) == (side, "provided", TAX), record
        assert (record["requester"], record["provider"], record["items"]) == ("013315", "012025", [INCOME]), record
    [brokered] = [r for r in broker_records(dev) if r["request_id"] == request_id]
    assert (brokered["outcome"], brokered["requester"], brokered["provider"]) == ("provided", "013315", "012025")


def test_a_forbidden_item_and_an_unknown_person_look_the_same_and_are_recorded(linkage, moved, dev):
    _, at_b = moved
    # 世帯情報: an item of the table, not for 個人住民税の賦課.
    forbidden = ask(linkage, "b-town", at_b["atena_number"], items=("世帯情報",))
    stranger = register("b-town", dev)  # never lived in Ａ市
    linked(linkage["b-town"]["db"], stranger["atena_number"])
    unknown = ask(linkage, "b-town", stranger["atena_number"])
    assert forbidden.status == unknown.status == 403, (forbidden.body, unknown.body)
    assert forbidden.body["error"] == unknown.body["error"], (
        "the requester can tell a forbidden query from an unknown person"
    )
    reasons = {r["request_id"]: r.get("reason", "") for r in broker_records(dev)}
    assert "may not receive 世帯情報" in reasons[forbidden.body["request_id"]]
    assert "holds no 符号" in reasons[unknown.body["request_id"]]
    records = chukan(linkage["b-town"]["app"], linkage["b-town"]["chukan"], "GET", "/api/records").body["records"]
    outcomes = {r["record"]["request_id"]: r["record"]["outcome"] for r in records}
    assert outcomes[forbidden.body["request_id"]] == outcomes[unknown.body["request_id"]] == "refused"


def test_a_former_municipality_provides_of_its_former_residents_only(linkage, dev):
    """Root on Ｂ町's app VM links a current resident of Ａ市 it learnt the 住民票コード of: the broker
    issues Ｂ町 a 符号 (it cannot check residency), but Ａ市 does not provide, as the person still
    lives there; once the person has moved out of Ａ市, it does."""
    a, b = linkage["a-city"], linkage["b-town"]
    resident = register("a-city", dev)
    linked(a["db"], resident["atena_number"])
    fuhon = {
        "atena_number": resident["atena_number"],
        "item": INCOME,
        "system": "zei",
        "value": {"年度": 2025, "所得": 1},
    }
    assert chukan(a["app"], a["chukan"], "POST", "/api/fuhon", fuhon).status == 201
    forged = f"98{secrets.randbelow(10**8):08d}"
    hostile = chukan(
        b["app"], b["chukan"], "POST", "/api/link", {"atena_number": forged, "resident_code": resident["resident_code"]}
    )
    assert hostile.status == 200, hostile.body
    refused = ask(linkage, "b-town", forged)
    assert refused.status == 403, refused.body
    provided = chukan(a["app"], a["chukan"], "GET", f"/api/records?request_id={refused.body['request_id']}").body[
        "records"
    ]
    assert [r["record"]["reason"] for r in provided] == ["the person is not a former resident here"], provided
    out = call_terminal(
        "a-city",
        "POST",
        f"/api/residents/{resident['ref']}/move-out",
        {"event_date": TODAY.isoformat(), "destination": "Ｂ町"},
    )
    assert out.status == 200, out.body
    deadline = time.monotonic() + 60
    while (answer := ask(linkage, "b-town", forged)).status != 200:  # once atena-link has told the 中間サーバー
        assert time.monotonic() < deadline, answer.body
        time.sleep(1)
    assert answer.body["items"] == {INCOME: {"年度": 2025, "所得": 1}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"office": "好奇心"}, "office", id="office-not-in-the-table"),
        pytest.param({"items": ["口座番号"]}, "items", id="item-not-in-the-table"),
        pytest.param({"provider_kind": "anyone"}, "provider_kind", id="kind-not-in-the-table"),
        pytest.param({"items": []}, "items", id="no-items"),
        pytest.param({"atena_number": "48213907715"}, "atena_number", id="a-resident-code-not-an-atena-number"),
        pytest.param({"provider": "12025"}, "provider", id="provider-five-digits"),
    ],
)
def test_a_bad_query_is_refused_by_name_and_sends_nothing(linkage, moved, dev, change, field):
    before = len(broker_records(dev))
    side = linkage["b-town"]
    body = {
        "atena_number": moved[1]["atena_number"],
        "office": TAX,
        "provider": "012025",
        "provider_kind": FORMER,
        "items": [INCOME],
        **change,
    }
    answer = chukan(side["app"], side["chukan"], "POST", "/api/query", body)
    assert (answer.status, answer.body.get("field")) == (400, field), answer.body
    assert len(broker_records(dev)) == before, "a bad query reached the broker"


def test_a_provider_that_is_down_answers_alike_whoever_is_asked_about(linkage, moved, dev):
    """Ａ市's databases out of the 中間サーバー's reach: a person Ａ市 holds and one it does not
    get the same answer, and the broker records what it could not do."""
    _, at_b = moved
    stranger = register("b-town", dev)
    linked(linkage["b-town"]["db"], stranger["atena_number"])
    with Lab(dev) as handle:
        for db in ("a-city-db", "a-city-db-replica"):
            handle.cut(db, "interconnect")
        try:
            held = ask(linkage, "b-town", at_b["atena_number"])
            unknown = ask(linkage, "b-town", stranger["atena_number"])
        finally:
            for db in ("a-city-db-replica", "a-city-db"):
                handle.plug(db, "interconnect")
            streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            deadline = time.monotonic() + 60
            while handle.sql("a-city-db", streaming) != "1":  # a synchronous commit waits for it
                assert time.monotonic() < deadline, "Ａ市's replica did not stream again"
                time.sleep(0.5)
    assert held.status == unknown.status == 503, (held.body, unknown.body)
    assert held.body["error"] == unknown.body["error"], "a provider that is down tells who it holds"
    outcomes = {r["request_id"]: r["outcome"] for r in broker_records(dev)}
    assert outcomes[held.body["request_id"]] == outcomes[unknown.body["request_id"]] == "provider-unavailable"
    assert ask(linkage, "b-town", at_b["atena_number"]).status == 200, "the linkage did not come back"


def test_an_app_reaches_the_chukan_on_its_own_segment_only(linkage):
    """The tenant is the segment a call comes from: Ｂ町's app cannot call on Ａ市's."""
    for caller, other in (("b-town", "a-city"), ("a-city", "b-town")):
        reach = linkage[caller]["app"].run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{linkage[other]['chukan']}/8600'")
        assert reach.rc != 0, f"{caller}'s app reached the 中間サーバー on {other}'s segment"


def test_one_tenants_credentials_open_no_other_tenants_database(vm, dev):
    topology = plan(dev)
    passwords = stack_secrets("dev").as_extravars(m.code for m in dev.municipalities)["chukan_db_passwords"]
    b_town = topology.vm("b-town-db").addresses["interconnect"]
    tried = vm("chukan").run(
        f"cd /tmp && PGPASSWORD={shlex.quote(passwords['012025'])} psql -XAtq "
        f"'host={b_town} dbname=chukan user=chukan connect_timeout=3' -c 'SELECT count(*) FROM chukan.fuhon'"
    )
    assert tried.rc != 0 and "password authentication failed" in tried.stderr, tried
    own = vm("chukan").run(
        f"cd /tmp && PGPASSWORD={shlex.quote(passwords['013315'])} psql -XAtq "
        f"'host={b_town} dbname=chukan user=chukan connect_timeout=3' -c 'SELECT 1'"
    )
    assert own.rc == 0 and own.stdout.strip() == "1", own


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE chukan.records SET record = '{}'",
        "DELETE FROM chukan.records",
        "TRUNCATE chukan.records",
        "DROP TABLE chukan.linked",
    ],
)
def test_the_chukan_cannot_change_or_remove_a_record(vm, statement):
    result = vm("a-city-db").run(
        f"chpst -u postgres psql -XAtq -d chukan -v ON_ERROR_STOP=1 -c 'SET ROLE chukan' -c \"{statement}\""
    )
    assert result.rc != 0 and ("permission denied" in result.stderr or "must be owner" in result.stderr), result


def test_no_resident_code_or_my_number_in_the_broker_or_the_chukan(vm, moved, dev):
    at_a, _ = moved
    people = vm("a-city-db").check_output(
        "runuser -u postgres -- psql -XAtq -d jumin -c 'SELECT resident_code, my_number FROM residents'"
    )
    secrets = {value for line in people.split() for value in line.split("|")} | {
        at_a["resident_code"],
        at_a["my_number"],
    }
    dump = "import sqlite3; print('\\n'.join(sqlite3.connect('/var/lib/broker/broker.sqlite3').iterdump()))"
    places = {"broker tables": vm("broker").check_output(f"python3 -c {shlex.quote(dump)}")}
    for m in dev.municipalities:
        places[f"{m.id} tenant"] = vm(f"{m.id}-db").check_output("cd /tmp && runuser -u postgres -- pg_dump -d chukan")
    for name in ("broker", "chukan", "chukan-standby"):
        logs = subprocess.run(["docker", "logs", f"lgcloud-dev-{name}"], capture_output=True, text=True, check=True)
        places[f"{name} log"] = logs.stdout + logs.stderr
    for place, text in places.items():
        leaked = [s for s in secrets if s and s in text]
        assert not leaked, f"{place} holds {len(leaked)} 住民票コード or 個人番号"


def verify(*args: str) -> tuple[int, list[dict]]:
    done = subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", "linkage", "verify-records", "--stack", "dev", "--json", *args],
        capture_output=True,
        text=True,
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else []


def test_every_chain_holds_and_a_tampered_record_is_found_where_it_is(vm, moved, linkage, dev):
    ask(linkage, "b-town", moved[1]["atena_number"])  # at least one record at both ends
    status, checks = verify()
    assert status == 0 and {c["keeper"] for c in checks} == {*(m.id for m in dev.municipalities), "broker"}, checks
    assert all(c["first_broken"] is None for c in checks), checks
    db, psql = vm("a-city-db"), "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d chukan -c"
    position = int(db.check_output(f'{psql} "SELECT max(position) FROM chukan.records"'))
    original = db.check_output(f'{psql} "SELECT record FROM chukan.records WHERE position = {position}"')
    # The superuser, not the 中間サーバー (which may only append): what only an intruder could do.
    change = (
        f"UPDATE chukan.records SET record = replace(record, '{TAX}', '児童手当の支給') WHERE position = {position}"
    )
    db.check_output(f'{psql} "{change}"')
    try:
        status, checks = verify("--municipality", "a-city")
        assert status == 1 and checks[0]["first_broken"] == position, checks
    finally:
        encoded = base64.b64encode(original.encode()).decode()
        db.check_output(
            f"{psql} \"UPDATE chukan.records SET record = convert_from(decode('{encoded}', 'base64'), 'UTF8')"
            f' WHERE position = {position}"'
        )
    assert verify("--municipality", "a-city")[0] == 0, "the record put back does not link again"


def test_a_tampered_broker_record_is_found(vm):
    broker = vm("broker")
    # A space after the text: the record reads the same, its hash no longer follows; rtrim undoes it.
    script = shlex.quote(
        "import sqlite3, sys; db = sqlite3.connect('/var/lib/broker/broker.sqlite3'); "
        "db.execute(sys.argv[1]); db.commit()"
    )
    tamper = "python3 -c " + script + " " + shlex.quote("UPDATE records SET record = record || ' ' WHERE position = 0")
    undo = (
        "python3 -c " + script + " " + shlex.quote("UPDATE records SET record = rtrim(record, ' ') WHERE position = 0")
    )
    before = verify()[1]
    assert next(c for c in before if c["keeper"] == "broker")["first_broken"] is None, before
    broker.check_output(tamper)
    try:
        status, checks = verify()
        assert status == 1 and next(c for c in checks if c["keeper"] == "broker")["first_broken"] == 0, checks
    finally:
        broker.check_output(undo)


def test_the_newest_record_removed_is_found_by_the_anchor(vm, moved, linkage):
    """Every link holds when the newest record is gone; the controller's anchor sees it."""
    ask(linkage, "b-town", moved[1]["atena_number"])
    assert verify("--municipality", "a-city")[0] == 0  # anchors Ａ市's chain where it ends now
    db, psql = vm("a-city-db"), "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d chukan -c"
    last = db.check_output(f'{psql} "SELECT position, record, hash FROM chukan.records ORDER BY position DESC LIMIT 1"')
    position, record, stored = last.split("|", 2)
    db.check_output(f'{psql} "DELETE FROM chukan.records WHERE position = {position}"')
    try:
        status, checks = verify("--municipality", "a-city")
        assert status == 1 and (checks[0]["first_broken"], checks[0]["anchored"]) == (None, "shorter"), checks
        assert verify("--municipality", "a-city")[0] == 1  # found again: a failed check moves no anchor
        # Looked into, the chain as it is becomes the anchor; its links are still walked.
        status, checks = verify("--municipality", "a-city", "--reanchor")
        assert status == 0 and checks[0]["anchored"] == "first check", checks
    finally:
        encoded = base64.b64encode(record.encode()).decode()
        db.check_output(
            f'{psql} "INSERT INTO chukan.records VALUES ({position},'
            f" convert_from(decode('{encoded}', 'base64'), 'UTF8'), '{stored}')\""
        )
    status, checks = verify("--municipality", "a-city")
    assert status == 0 and checks[0]["anchored"] == "held", checks


def linkage_verb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", "linkage", *args, "--stack", "dev"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_move_in_rehearses_the_seed_scenario_from_the_offices(configured, linkage):
    done = linkage_verb("move-in", "--from", "c-village", "--to", "a-city", "--income", "2000000", "--json")
    assert done.returncode == 0, done.stderr
    moved = json.loads(done.stdout)
    # 均等割 5,000 + 所得割 10 % of (2,000,000 − 430,000).
    assert (moved["income"], moved["per_capita"], moved["income_levy"], moved["tax"]) == (
        2_000_000,
        5_000,
        157_000,
        162_000,
    ), moved
    sides = {(r["keeper"], r["side"], r["outcome"], r["office"]) for r in moved["records"]}
    assert sides == {("a-city", "requester", "provided", TAX), ("c-village", "provider", "provided", TAX)}, moved
    # Each side's record is the one its tenant keeps under the query's id.
    for record in moved["records"]:
        kept = linkage[record["keeper"]]["db"].check_output(
            "runuser -u postgres -- psql -XAtq -d chukan -c "
            f"\"SELECT position FROM chukan.records WHERE record::jsonb ->> 'request_id' = '{moved['request_id']}'\""
        )
        assert int(kept) == record["position"], (record, kept)
    # The 住民票コード followed the person (in --json only, for a script to check); the 個人番号 is
    # nowhere in the output, nor is either in the tables.
    codes = moved["resident_codes"]
    assert set(codes) == {"c-village", "a-city"} and len(set(codes.values())) == 1, codes
    numbers = [t for t in done.stdout.replace('"', " ").split() if t.isdigit() and len(t) in (11, 12)]
    assert numbers == list(codes.values()), numbers
    table = linkage_verb("move-in", "--from", "c-village", "--to", "b-town")
    assert table.returncode == 0 and not any(t.isdigit() and len(t) in (11, 12) for t in table.stdout.split()), (
        table.stdout
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--from", "a-city", "--to", "a-city"), "same municipality"),
        (("--from", "a-city", "--to", "z-town"), "no municipality 'z-town'"),
        (("--from", "a-city"), "needs --from and --to"),
        (("--from", "a-city", "--to", "b-town", "--income", "-1"), "--income"),
    ],
)
def test_move_in_refuses_bad_arguments_and_registers_nobody(configured, linkage, args, says):
    count = "SELECT count(*) FROM residents"
    before = {
        m: linkage[m]["db"].check_output(f'runuser -u postgres -- psql -XAtq -d jumin -c "{count}"') for m in linkage
    }
    done = linkage_verb("move-in", *args)
    assert done.returncode == 2 and says in done.stderr, (done.returncode, done.stderr)
    after = {
        m: linkage[m]["db"].check_output(f'runuser -u postgres -- psql -XAtq -d jumin -c "{count}"') for m in linkage
    }
    assert after == before


@pytest.mark.municipalities
def test_the_offices_see_the_linkage_healthy(configured, m):
    answer = call_terminal(m.id, "GET", "/linkage/healthz")
    assert (answer.status, answer.json()["status"]) == (200, "ok"), answer.text


def test_a_broker_that_is_down_shows_in_the_linkage_health_and_comes_back(configured, vm):
    broker = vm("broker")
    broker.check_output("sv stop broker")
    try:
        answer = call_terminal("a-city", "GET", "/linkage/healthz")
        assert answer.status == 503 and "broker" in answer.json()["linkage"], answer.text
    finally:
        broker.check_output("sv start broker")
    deadline = time.monotonic() + 30
    while call_terminal("a-city", "GET", "/linkage/healthz").status != 200:
        assert time.monotonic() < deadline, "the linkage did not come back with the broker"
        time.sleep(1)


@pytest.fixture
def scratch_tenant(configured, dev):
    """A tenant database of ten chained records beside Ａ市's, dropped afterwards: 0-5 and 7 are eight
    years old, 6 one year old (a record out of time order), 8-9 new."""
    from lgcloud.ops.linkage import linkage_core

    core, name = linkage_core(), "chukan_purge_test"
    stamps = ["2018-04-01T09:00:00.000+00:00"] * 6 + ["2025-06-01T09:00:00.000+00:00", "2018-05-01T09:00:00.000+00:00"]
    stamps += ["2026-11-30T09:00:00.000+00:00"] * 2
    rows, previous = [], core.GENESIS
    for position, at in enumerate(stamps):
        text = core.canonical({"position": position, "at": at, "office": TAX, "outcome": "provided"})
        previous = core.chain_hash(previous, text)
        rows.append((position, text, previous))
    with Lab(dev) as lab:
        lab.run("a-city-db", f"chpst -u postgres createdb {name}")
        try:
            lab.sql("a-city-db", role_sql("postgresql", "ensure_primary.py", "CHUKAN"), database=name)
            values = ",".join(f"({p}, '{t}', '{h}')" for p, t, h in rows)
            lab.sql("a-city-db", f"INSERT INTO chukan.records VALUES {values}", database=name)
            yield lab, name, rows
        finally:
            lab.run("a-city-db", f"chpst -u postgres dropdb --if-exists {name}", check=False)


def test_a_purge_removes_only_records_past_their_retention_and_the_chain_still_holds(scratch_tenant):
    from lgcloud.ops.linkage import purge_records, tenant_chain

    lab, name, rows = scratch_tenant
    [shown] = purge_records(lab, ["a-city"], apply=False, database=name)
    assert (shown.records, shown.first, shown.last, shown.purged) == (6, 0, 5, False), shown
    assert lab.sql("a-city-db", "SELECT count(*) FROM chukan.records", database=name) == "10"  # shown only

    [done] = purge_records(lab, ["a-city"], apply=True, database=name)
    assert (done.records, done.purged) == (6, True), done
    # Record 7 is as old, but comes after a younger one: it stays, and so does everything after.
    kept = lab.sql(
        "a-city-db", "SELECT string_agg(position::text, ',' ORDER BY position) FROM chukan.records", database=name
    )
    assert kept == "6,7,8,9", kept
    assert (
        lab.sql("a-city-db", "SELECT position || ' ' || hash FROM chukan.chain_base", database=name)
        == f"5 {rows[5][2]}"
    )
    check = tenant_chain(lab, "a-city-db", name)
    assert (check.first_position, check.records, check.first_broken, check.intact) == (6, 4, None, True), check
    # Nothing more is old enough, and the newest record is never purged.
    [again] = purge_records(lab, ["a-city"], apply=True, database=name)
    assert (again.records, again.purged) == (0, False), again


def test_purge_records_on_the_lab_shows_nothing_to_purge_and_refuses_bad_arguments(configured):
    done = linkage_verb("purge-records", "--json")
    assert done.returncode == 0, done.stderr
    assert {(p["keeper"], p["records"], p["retention_years"]) for p in json.loads(done.stdout)} == {
        ("a-city", 0, 7),
        ("b-town", 0, 7),
        ("c-village", 0, 7),
    }
    refused = linkage_verb("purge-records", "--municipality", "z-town", "--yes")
    assert refused.returncode == 2 and "no municipality 'z-town'" in refused.stderr, refused.stderr
