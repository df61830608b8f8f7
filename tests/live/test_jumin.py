"""住民記録 (the jumin role), used as a clerk uses it: from the office terminal, through the gateway.

Every request is a real `curl` on the municipality's terminal to http://jumin.<id>.lgwan.test/;
what was written is read back through the same API, and "nothing written" is checked on the
municipality's primary database.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import shlex
import uuid
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from lgcloud.model.codes import my_number_check_digit, my_number_is_valid
from lgcloud.state.clerks import DRILL_CLERK

from .offices import call
from .roles import role_sql

pytestmark = pytest.mark.live

TODAY = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date()


def person(**fields) -> dict:
    """A 転入届 (move-in) that the registry accepts; `fields` override or (as None) drop fields."""
    body = {
        "name": f"試験 {uuid.uuid4().hex[:8]}",
        "kana": "シケン タロウ",
        "birth_date": "1990-04-01",
        "sex": "男",
        "address": "本町一丁目1番1号",
        "event": "move-in",
        "event_date": (TODAY - dt.timedelta(days=7)).isoformat(),
        "previous_address": "東京都千代田区千代田1-1",
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not None}


def a_valid_my_number() -> str:
    first_eleven = f"{secrets.randbelow(10**11):011d}"
    return f"{first_eleven}{my_number_check_digit(first_eleven)}"


@pytest.fixture(scope="module")
def a_city(dev):
    """The municipality most tests register with: the stack's first."""
    return dev.municipalities[0]


@pytest.fixture(scope="module")
def terminal(configured, vm):
    return lambda municipality: vm(f"{municipality}-terminal")


@pytest.fixture(scope="module")
def rows(configured, vm):
    """Rows of the residents table on a municipality's primary, counted as the superuser."""

    def count(municipality: str) -> int:
        return int(primary_sql(vm, municipality, "SELECT count(*) FROM residents"))

    return count


def primary_sql(vm, municipality: str, sql: str) -> str:
    """What `sql` reads from the registry on the municipality's primary, as the superuser."""
    return vm(f"{municipality}-db").check_output(f"runuser -u postgres -- psql -XAtq -d jumin -c {shlex.quote(sql)}")


def register(terminal, municipality: str, body: dict) -> dict:
    response = call(terminal(municipality), municipality, "POST", "/api/residents", body)
    assert response.status == 201, f"{municipality}: {response.status} {response.body!r}"
    return response.json()["resident"]


@pytest.mark.municipalities
def test_register_and_read_back(terminal, m):
    body = person()
    created = register(terminal, m.id, body)
    assert len(created["resident_code"]) == 11 and created["resident_code"].isdigit(), created
    response = call(terminal(m.id), m.id, "GET", f"/api/residents/{created['ref']}")
    assert response.status == 200, response.body
    assert response.content_type.startswith("application/json"), response.content_type
    read = response.json()
    assert read["municipality_code"] == m.code, read
    for field in ("name", "kana", "birth_date", "sex", "address", "event", "event_date", "previous_address"):
        assert read["resident"][field] == body[field], field
    assert read["resident"]["status"] == "resident"
    assert "my_number" not in read["resident"], "a read that names no purpose shows the 個人番号"
    for_purpose = call(terminal(m.id), m.id, "GET", f"/api/residents/{created['ref']}?purpose=kokuho").json()
    assert for_purpose["resident"]["my_number"] == created["my_number"]


@pytest.mark.municipalities
def test_the_my_number_has_a_valid_check_digit(terminal, m):
    numbers = [
        register(
            terminal, m.id, person(event="birth", birth_date=TODAY.isoformat(), event_date=None, previous_address=None)
        )["my_number"]
        for _ in range(3)
    ]
    assert all(my_number_is_valid(n) for n in numbers), numbers
    assert len(set(numbers)) == 3, numbers


def test_a_supplied_my_number_is_kept_and_held_by_one_resident_only(terminal, rows, a_city):
    number = a_valid_my_number()
    created = register(terminal, a_city.id, person(my_number=number))
    assert created["my_number"] == number
    before = rows(a_city.id)
    again = call(terminal(a_city.id), a_city.id, "POST", "/api/residents", person(my_number=number))
    assert (again.status, again.json()["field"]) == (409, "my_number"), again.body
    assert rows(a_city.id) == before


def move_out(terminal, municipality: str, ref: str, destination: str) -> None:
    response = call(
        terminal(municipality),
        municipality,
        "POST",
        f"/api/residents/{ref}/move-out",
        {"event_date": TODAY.isoformat(), "destination": destination},
    )
    assert response.status == 200, response.body


def test_a_person_keeps_the_resident_code_across_moves(terminal, rows, dev):
    """Ａ市 → Ｂ町 → back to Ａ市: one 住民票コード and one 個人番号 throughout, the 除票 kept."""
    a, b = dev.municipalities[0], dev.municipalities[1]
    born = register(terminal, a.id, person())
    move_out(terminal, a.id, born["ref"], b.name)
    carried = {"resident_code": born["resident_code"], "my_number": born["my_number"]}
    at_b = register(terminal, b.id, person(name=born["name"], **carried))
    assert (at_b["resident_code"], at_b["my_number"]) == (born["resident_code"], born["my_number"])
    move_out(terminal, b.id, at_b["ref"], a.name)
    before = rows(a.id)
    back = register(terminal, a.id, person(name=born["name"], **carried))
    assert back["resident_code"] == born["resident_code"] and back["ref"] != born["ref"]
    joshu = call(terminal(a.id), a.id, "GET", f"/api/residents/{born['ref']}").json()["resident"]
    assert (joshu["status"], joshu["resident_code"]) == ("moved-out", born["resident_code"]), "the 除票 changed"
    # One 宛名番号 per person within a municipality, whatever rows the registry holds of them.
    assert re.fullmatch(r"[0-9]{10}", born["atena_number"]), born
    assert back["atena_number"] == joshu["atena_number"] == born["atena_number"]
    # While the person lives there, nobody else moves in with the code.
    again = call(terminal(a.id), a.id, "POST", "/api/residents", person(resident_code=born["resident_code"]))
    assert (again.status, again.json()["field"]) == (409, "resident_code"), again.body
    assert rows(a.id) == before + 1, "a refused move-in wrote a row"
    assert register(terminal, a.id, person())["atena_number"] != born["atena_number"], "another person's 宛名番号"


@pytest.mark.parametrize("family", ["髙橋", "山﨑", "𠮷田"])
def test_rare_kanji_round_trip(terminal, family, a_city):
    """外字 in names: 髙 (U+9AD9), 﨑 (U+FA11) and 𠮷 (U+20BB7, four bytes in UTF-8) come back as sent."""
    name = f"{family} {uuid.uuid4().hex[:6]}"
    created = register(terminal, a_city.id, person(name=name))
    assert created["name"] == name
    host = terminal(a_city.id)
    read = call(host, a_city.id, "GET", f"/api/residents/{created['ref']}").json()["resident"]
    assert read["name"].encode() == name.encode(), read["name"]
    found = call(host, a_city.id, "GET", f"/api/residents?name={quote(name)}").json()["residents"]
    assert [r["resident_code"] for r in found] == [created["resident_code"]], found
    assert "my_number" not in found[0], "a name lookup shows the 個人番号"
    html = call(host, a_city.id, "GET", f"/api/residents/{created['ref']}/certificate.html")
    assert name in html.text


BAD_REGISTRATIONS = [
    pytest.param(person(name=None), "name", id="missing-name"),
    pytest.param(person(address=None), "address", id="missing-address"),
    pytest.param(person(birth_date="2025-02-30"), "birth_date", id="impossible-date"),
    pytest.param(person(birth_date="1990/04/01"), "birth_date", id="malformed-date"),
    pytest.param(
        person(
            event="birth", birth_date=(TODAY + dt.timedelta(days=2)).isoformat(), event_date=None, previous_address=None
        ),
        "birth_date",
        id="future-birth-date",
    ),
    pytest.param(person(event_date=(TODAY + dt.timedelta(days=2)).isoformat()), "event_date", id="future-move-in"),
    pytest.param(person(event_date="1980-01-01"), "event_date", id="move-in-before-birth"),
    pytest.param(person(event="death"), "event", id="unknown-event"),
    pytest.param(person(sex="M"), "sex", id="unknown-sex"),
    pytest.param(person(kana="しけん"), "kana", id="kana-not-katakana"),
    pytest.param(person(my_number="621498320258"), "my_number", id="my-number-wrong-check-digit"),
    pytest.param(person(my_number="62149832025"), "my_number", id="my-number-eleven-digits"),
    pytest.param(
        person(
            event="birth",
            birth_date=TODAY.isoformat(),
            event_date=None,
            previous_address=None,
            my_number="621498320257",
        ),
        "my_number",
        id="my-number-with-a-birth",
    ),
    pytest.param(person(resident_code="4821390771"), "resident_code", id="resident-code-ten-digits"),
    pytest.param(person(resident_code=48213907715), "resident_code", id="resident-code-a-number"),
    pytest.param(person(resident_code="４８２１３９０７７１５"), "resident_code", id="full-width-resident-code"),
    pytest.param(
        person(
            event="birth",
            birth_date=TODAY.isoformat(),
            event_date=None,
            previous_address=None,
            resident_code="48213907715",
        ),
        "resident_code",
        id="resident-code-with-a-birth",
    ),
    pytest.param(person(nickname="タロ"), "nickname", id="unknown-field"),
    pytest.param("name=試験&kana=シケン".encode(), "body", id="form-body-not-json"),
    pytest.param(b'{"name": "\xe8\xa9\xa6\xe9\xa8\x93", ', "body", id="truncated-json"),
    pytest.param(b"[1, 2]", "body", id="json-not-an-object"),
    # Wrong types, NUL, lone surrogates, digits that are not ASCII: refused by name, never a 500.
    pytest.param(person(event=[]), "event", id="event-a-list"),
    pytest.param(person(sex={"value": "男"}), "sex", id="sex-an-object"),
    pytest.param(person(name=123), "name", id="name-a-number"),
    pytest.param(person(name="試験\u0000太郎"), "name", id="nul-in-name"),
    pytest.param(json.dumps(person(name="@")).replace('"@"', '"\\ud800"').encode(), "name", id="lone-surrogate"),
    pytest.param(
        json.dumps({**person(), "@": 1}).replace('"@"', '"\\udc00"').encode(), "\\udc00", id="lone-surrogate-key"
    ),
    pytest.param(person(birth_date="١٩٩٠-٠٤-٠١"), "birth_date", id="arabic-indic-date"),
    pytest.param(person(my_number="６２１４９８３２０２５７"), "my_number", id="full-width-my-number"),
    pytest.param(person(address="あ" * 30_000), "body", id="body-over-64-kib"),
]


@pytest.mark.parametrize(("body", "field"), BAD_REGISTRATIONS)
def test_a_bad_registration_is_refused_and_nothing_written(terminal, rows, body, field, a_city):
    before = rows(a_city.id)
    response = call(terminal(a_city.id), a_city.id, "POST", "/api/residents", body)
    assert 400 <= response.status < 500, f"{response.status} {response.body!r}"
    answer = response.json()
    assert answer["field"] == field, answer
    assert answer["error"], answer
    assert answer["municipality_code"] == a_city.code
    assert rows(a_city.id) == before, "a refused registration wrote a row"


def test_move_out(terminal, a_city):
    host = terminal(a_city.id)
    ref = register(terminal, a_city.id, person())["ref"]
    response = call(
        host,
        a_city.id,
        "POST",
        f"/api/residents/{ref}/move-out",
        {"event_date": TODAY.isoformat(), "destination": "Ｂ町中央2-2"},
    )
    assert response.status == 200, response.body
    read = call(host, a_city.id, "GET", f"/api/residents/{ref}").json()["resident"]
    assert (read["status"], read["moved_out_on"], read["moved_out_to"]) == (
        "moved-out",
        TODAY.isoformat(),
        "Ｂ町中央2-2",
    )


def test_a_second_move_out_is_refused_and_changes_nothing(terminal, a_city):
    host = terminal(a_city.id)
    ref = register(terminal, a_city.id, person())["ref"]
    first = call(
        host,
        a_city.id,
        "POST",
        f"/api/residents/{ref}/move-out",
        {"event_date": (TODAY - dt.timedelta(days=1)).isoformat(), "destination": "Ｂ町中央2-2"},
    )
    assert first.status == 200, first.body
    again = call(
        host,
        a_city.id,
        "POST",
        f"/api/residents/{ref}/move-out",
        {"event_date": TODAY.isoformat(), "destination": "Ｃ村3-3"},
    )
    assert (again.status, again.json()["field"]) == (409, "status"), again.body
    read = call(host, a_city.id, "GET", f"/api/residents/{ref}").json()["resident"]
    assert (read["moved_out_on"], read["moved_out_to"]) == (
        (TODAY - dt.timedelta(days=1)).isoformat(),
        "Ｂ町中央2-2",
    ), "the refused move-out was written"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"destination": "Ｂ町"}, "event_date", id="missing-date"),
        pytest.param({"event_date": TODAY.isoformat()}, "destination", id="missing-destination"),
        pytest.param(b"moving", "body", id="not-json"),
    ],
)
def test_a_bad_move_out_is_refused_and_nothing_written(terminal, body, field, a_city):
    host = terminal(a_city.id)
    ref = register(terminal, a_city.id, person())["ref"]
    response = call(host, a_city.id, "POST", f"/api/residents/{ref}/move-out", body)
    assert (response.status, response.json()["field"]) == (400, field), response.body
    assert call(host, a_city.id, "GET", f"/api/residents/{ref}").json()["resident"]["status"] == "resident"


def test_a_change_of_name_is_written_and_the_name_before_kept(terminal, vm, a_city):
    host = terminal(a_city.id)
    ref = register(terminal, a_city.id, person(name="旧姓 花子", kana="キュウセイ ハナコ"))["ref"]
    change = {"name": "新姓 花子", "kana": "シンセイ ハナコ", "event_date": TODAY.isoformat()}
    response = call(host, a_city.id, "POST", f"/api/residents/{ref}/name-change", change)
    assert response.status == 200, response.body
    read = call(host, a_city.id, "GET", f"/api/residents/{ref}").json()["resident"]
    assert (read["name"], read["kana"]) == ("新姓 花子", "シンセイ ハナコ")
    before = primary_sql(vm, a_city.id, f"SELECT name_before, kana_before FROM name_changes WHERE ref = '{ref}'")
    assert before == "旧姓 花子|キュウセイ ハナコ"
    of_person = f"(SELECT resident_code FROM residents WHERE ref = '{ref}')"
    recorded = primary_sql(
        vm,
        a_city.id,
        f"SELECT count(*) FROM audit.access_records WHERE action = 'name-change' AND resident_code = {of_person}",
    )
    assert recorded == "1", "the change of name is not in the アクセス記録"
    queued = primary_sql(
        vm,
        a_city.id,
        "SELECT value->>'氏名' FROM fuhon_outbox JOIN atena USING (atena_number)"
        f" WHERE system = 'jumin' AND item = '住民票関係情報' AND resident_code = {of_person}",
    )
    assert queued == "新姓 花子", "the 中間サーバー's 住民票関係情報 副本 was not queued"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        pytest.param({"kana": "シンセイ ハナコ", "event_date": TODAY.isoformat()}, 400, "name", id="missing-name"),
        pytest.param(
            {"name": "新姓 花子", "kana": "しんせい", "event_date": TODAY.isoformat()}, 400, "kana", id="hiragana"
        ),
        pytest.param(
            {"name": "新姓 花子", "kana": "シンセイ ハナコ", "event_date": (TODAY + dt.timedelta(days=1)).isoformat()},
            400,
            "event_date",
            id="future",
        ),
        pytest.param(
            {"name": "試験 花子", "kana": "シケン ハナコ", "event_date": TODAY.isoformat()}, 409, "name", id="same-name"
        ),
        pytest.param({"name": "新姓 花子", "kana": "シンセイ ハナコ", "ref": "x"}, 400, "ref", id="unknown-field"),
    ],
)
def test_a_bad_change_of_name_is_refused_and_nothing_written(terminal, vm, body, status, field, a_city):
    host = terminal(a_city.id)
    ref = register(terminal, a_city.id, person(name="試験 花子", kana="シケン ハナコ"))["ref"]
    response = call(host, a_city.id, "POST", f"/api/residents/{ref}/name-change", body)
    assert (response.status, response.json()["field"]) == (status, field), response.body
    assert call(host, a_city.id, "GET", f"/api/residents/{ref}").json()["resident"]["name"] == "試験 花子"
    kept = primary_sql(vm, a_city.id, f"SELECT count(*) FROM name_changes WHERE ref = '{ref}'")
    assert kept == "0", "a refused change of name was written"


def test_a_resident_who_moved_out_changes_name_where_they_live_now(terminal, a_city):
    host = terminal(a_city.id)
    ref = register(terminal, a_city.id, person())["ref"]
    moved = call(
        host,
        a_city.id,
        "POST",
        f"/api/residents/{ref}/move-out",
        {"event_date": TODAY.isoformat(), "destination": "Ｂ町"},
    )
    assert moved.status == 200, moved.body
    change = {"name": "新姓 花子", "kana": "シンセイ ハナコ", "event_date": TODAY.isoformat()}
    response = call(host, a_city.id, "POST", f"/api/residents/{ref}/name-change", change)
    assert (response.status, response.json()["field"]) == (409, "status"), response.body


@pytest.mark.parametrize(
    "query",
    [pytest.param(quote("試"), id="one-character"), pytest.param("%00", id="nul"), pytest.param("", id="empty")],
)
def test_a_name_lookup_needs_two_printable_characters(terminal, a_city, query):
    response = call(terminal(a_city.id), a_city.id, "GET", f"/api/residents?name={query}")
    assert (response.status, response.json()["field"]) == (400, "name"), response.body


def test_a_name_lookup_shows_at_most_twenty_residents(terminal, a_city):
    family = f"多数 {uuid.uuid4().hex[:6]}"
    for n in range(21):
        register(terminal, a_city.id, person(name=f"{family} {n}"))
    answer = call(terminal(a_city.id), a_city.id, "GET", f"/api/residents?name={quote(family)}").json()
    assert len(answer["residents"]) == 20 and answer["more"] is True, answer


def test_an_unknown_resident_is_404(terminal, a_city):
    response = call(terminal(a_city.id), a_city.id, "GET", f"/api/residents/{uuid.uuid4()}")
    assert (response.status, response.json()["field"]) == (404, "ref"), response.body


def test_a_url_names_a_resident_by_its_ref_never_by_a_code(terminal, a_city):
    """The 住民票コード and the 個人番号 are data: a URL carrying either names no resident."""
    created = register(terminal, a_city.id, person())
    assert created["ref"] not in (created["resident_code"], created["my_number"])
    for key in ("resident_code", "my_number"):
        response = call(terminal(a_city.id), a_city.id, "GET", f"/api/residents/{created[key]}")
        assert (response.status, response.json()["field"]) == (404, "ref"), response.body
        assert created["name"] not in response.text


def test_certificate_json(terminal, a_city):
    host = terminal(a_city.id)
    body = person()
    created = register(terminal, a_city.id, body)
    response = call(host, a_city.id, "GET", f"/api/residents/{created['ref']}/certificate")
    assert response.status == 200, response.body
    certificate = response.json()["certificate"]
    assert certificate["title"] == "住民票の写し"
    assert (certificate["municipality"], certificate["municipality_code"]) == (a_city.name, a_city.code)
    assert certificate["issued_on"] == TODAY.isoformat()
    assert {k: certificate["resident"][k] for k in ("name", "birth_date", "address")} == {
        k: body[k] for k in ("name", "birth_date", "address")
    }
    assert "my_number" not in certificate["resident"], "the 個人番号 is on a certificate nobody asked it for"
    path = f"/api/residents/{created['ref']}/certificate?my_number=include"
    unnamed = call(host, a_city.id, "GET", path)
    assert (unnamed.status, unnamed.json()["field"]) == (400, "purpose"), unnamed.body
    asked = call(host, a_city.id, "GET", f"{path}&purpose=juminhyo")
    assert asked.json()["certificate"]["resident"]["my_number"] == created["my_number"]


def test_certificate_of_a_resident_who_moved_out_is_a_joshu(terminal, a_city):
    host = terminal(a_city.id)
    ref = register(terminal, a_city.id, person())["ref"]
    call(
        host,
        a_city.id,
        "POST",
        f"/api/residents/{ref}/move-out",
        {"event_date": TODAY.isoformat(), "destination": "Ｃ村"},
    )
    certificate = call(host, a_city.id, "GET", f"/api/residents/{ref}/certificate").json()["certificate"]
    assert certificate["title"] == "住民票の除票の写し", certificate


def test_certificate_html_is_printable_and_escaped(terminal, a_city):
    host = terminal(a_city.id)
    created = register(terminal, a_city.id, person(name="𠮷田 <b>花子</b>", address='本町<script>alert("x")</script>'))
    response = call(host, a_city.id, "GET", f"/api/residents/{created['ref']}/certificate.html")
    assert response.status == 200, response.body
    assert response.content_type.lower().replace(" ", "") == "text/html;charset=utf-8", response.content_type
    html = response.text
    assert "<title>住民票の写し" in html
    assert "𠮷田 &lt;b&gt;花子&lt;/b&gt;" in html, html
    assert "&lt;script&gt;" in html and "<script>" not in html, "the address was not escaped"
    assert created["resident_code"] in html and created["my_number"] not in html
    assert a_city.code in html


def test_the_backup_site_shows_nothing_it_could_not_record(terminal, lab, vm, a_city):
    """Through the standby gateway, the standby app answers from the replica, which takes no
    アクセス記録: it registers nothing and shows no resident, saying why; its health says replica."""
    host = terminal(a_city.id)
    standby = lab.vm("gateway-standby").addresses[a_city.access]
    created = register(terminal, a_city.id, person())
    health = call(host, a_city.id, "GET", "/healthz", via=standby)
    assert (health.status, health.json()["database"]) == (200, "read-only replica"), health.body
    read = call(host, a_city.id, "GET", f"/api/residents/{created['ref']}", via=standby)
    assert read.status == 503 and "アクセス記録" in read.json()["error"], read.body
    refused = call(host, a_city.id, "POST", "/api/residents", person(), via=standby)
    assert refused.status == 503, f"the backup site accepted a registration: {refused.status} {refused.body!r}"


def _records(vm, municipality: str, resident_code: str) -> list[list[str]]:
    out = vm(f"{municipality}-db").check_output(
        "chpst -u postgres psql -XAtq -d jumin -c "
        f"\"SELECT office, action, array_to_string(fields, ' '), coalesce(purpose, '-'), clerk "
        f"FROM audit.access_records WHERE resident_code = '{resident_code}' ORDER BY id\""
    )
    return [line.split("|") for line in out.splitlines()]


def test_every_look_at_a_resident_is_in_the_access_record(terminal, vm, a_city):
    host = terminal(a_city.id)
    body = person(name=f"記録 {uuid.uuid4().hex[:8]}")
    created = register(terminal, a_city.id, body)
    ref, code = created["ref"], created["resident_code"]
    call(host, a_city.id, "GET", f"/api/residents?name={quote(body['name'])}")
    call(host, a_city.id, "GET", f"/api/residents/{ref}")
    call(host, a_city.id, "GET", f"/api/residents/{ref}?purpose=zei")
    records = _records(vm, a_city.id, code)
    assert [(r[1], r[3]) for r in records] == [
        ("register", "juminhyo"),
        ("lookup", "-"),
        ("read", "-"),
        ("read", "zei"),
    ]
    assert {r[0] for r in records} == {str(a_city.terminal)}, "the office is the terminal the gateway saw"
    assert {r[4] for r in records} == {DRILL_CLERK}, "the clerk is the one signed in"
    assert "my_number" not in records[1][2].split() and "my_number" not in records[2][2].split()
    assert "my_number" in records[3][2].split()


def test_an_unknown_purpose_is_refused_and_shows_nothing(terminal, vm, a_city):
    host = terminal(a_city.id)
    created = register(terminal, a_city.id, person())
    response = call(host, a_city.id, "GET", f"/api/residents/{created['ref']}?purpose=curiosity")
    assert (response.status, response.json()["field"]) == (400, "purpose"), response.body
    assert "resident" not in response.json()
    assert [r[1] for r in _records(vm, a_city.id, created["resident_code"])] == ["register"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.access_records SET purpose = 'zei'",
        "DELETE FROM audit.access_records",
        "TRUNCATE audit.access_records",
        "DROP TABLE audit.access_records",
        "DROP SCHEMA audit CASCADE",
        "DELETE FROM audit.sign_ins",
        "UPDATE audit.sign_ins SET outcome = 'signed-in'",
        "DELETE FROM staff.clerks",
        "DROP TABLE staff.sessions",
    ],
)
def test_the_app_cannot_change_or_remove_an_access_record_or_an_account(vm, a_city, statement):
    result = vm(f"{a_city.id}-db").run(
        f"chpst -u postgres psql -XAtq -d jumin -v ON_ERROR_STOP=1 -c 'SET ROLE jumin' -c \"{statement}\""
    )
    assert result.rc != 0 and ("permission denied" in result.stderr or "must be owner" in result.stderr), result


# The residents table as registries made before the ref was the row key hold it.
_KEYED_BY_CODE = """
CREATE TABLE residents (
    resident_code char(11) PRIMARY KEY CHECK (resident_code ~ '^[0-9]{11}$'),
    my_number char(12) NOT NULL, name text NOT NULL, kana text NOT NULL, birth_date date NOT NULL,
    sex text NOT NULL, address text NOT NULL, event text NOT NULL, event_date date NOT NULL,
    previous_address text, moved_out_on date, moved_out_to text,
    recorded_at timestamptz NOT NULL DEFAULT now(), ref uuid NOT NULL DEFAULT gen_random_uuid()
);
CREATE UNIQUE INDEX residents_ref ON residents (ref);
INSERT INTO residents (resident_code, my_number, name, kana, birth_date, sex, address, event, event_date,
                       moved_out_on)
SELECT lpad(n::text, 11, '0'), lpad(n::text, 12, '0'), '試験 ' || n, 'シケン', '1990-04-01', '男', '本町',
       'move-in', '2026-01-01', CASE WHEN n % 2 = 0 THEN date '2026-02-01' END
FROM generate_series(1, 200) n;
"""


def test_a_registry_keyed_by_the_resident_code_is_rekeyed_in_place(vm, a_city):
    """The schema step turns an older registry's key into the ref with every row kept, twice over."""
    db = vm(f"{a_city.id}-db")
    scratch = f"rekey_{secrets.token_hex(4)}"
    psql = f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {scratch}"

    def run_sql(sql: str) -> str:
        encoded = base64.b64encode(sql.encode()).decode()
        return db.check_output(f"echo {encoded} | base64 -d | {psql} -f -")

    # The older registry's columns, each row's values: the schema step may add columns, never change a value.
    older = (
        "resident_code, my_number, name, kana, birth_date, sex, address, event, event_date, previous_address,"
        " moved_out_on, moved_out_to, recorded_at, ref"
    )
    table_sum = (
        f"SELECT count(*) || ' ' || md5(string_agg(ROW({older})::text, '|' ORDER BY resident_code)) FROM residents"
    )
    db.check_output(f"runuser -u postgres -- createdb {scratch}")
    try:
        run_sql(_KEYED_BY_CODE)
        before = run_sql(table_sum)
        for _ in range(2):  # every start of the app runs it: the second time changes nothing
            run_sql(role_sql("jumin", "jumin.py", "SCHEMA"))
        assert run_sql(table_sum) == before, "the rows changed"
        key = run_sql(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = i.indkey[0] WHERE i.indrelid = 'residents'::regclass AND i.indisprimary"
        )
        assert key == "ref", key
        # Every person the older registry held has a 宛名番号, one each.
        assert run_sql("SELECT count(*), count(DISTINCT resident_code) FROM atena") == "200|200"
        # A moved-out person's code may come back; a current resident's may not.
        run_sql(
            "INSERT INTO residents (resident_code, my_number, name, kana, birth_date, sex, address, event,"
            " event_date) VALUES ('00000000002', '000000000002', '試験 2', 'シケン', '1990-04-01', '男', '本町',"
            " 'move-in', '2026-03-01')"
        )
        taken = db.run(
            f'{psql} -c "INSERT INTO residents (resident_code, my_number, name, kana, birth_date, sex, address,'
            " event, event_date) VALUES ('00000000001', '000000000999', '試験', 'シケン', '1990-04-01', '男',"
            " '本町', 'move-in', '2026-03-01')\""
        )
        assert taken.rc != 0 and "residents_current_resident_code" in taken.stderr, taken
    finally:
        db.run(f"runuser -u postgres -- dropdb --if-exists {scratch}")
