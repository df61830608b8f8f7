"""マイ・ポータル on the live lab: 公的個人認証 by the 個人番号カード's certificate, the pages a person
sees after the seed's move-in, and every way in that must be refused.

One person moves from Ａ市 to Ｂ町 (`lgcloud.ops.move_in`, as `lgcloud linkage move-in` runs it),
with a card issued by Ａ市 before the 転出; Ｂ町 issues the new one through `lgcloud card issue`.
The portal is asked over its internet address from the host, as a citizen's browser would.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lgcloud.model.naming import EXPORTER_PORT, PORTAL_METRICS_PORT, vm_resource
from lgcloud.observe.exporter import exporter_address
from lgcloud.ops.cards import issue
from lgcloud.ops.clerks import sign_in
from lgcloud.ops.lab import Lab
from lgcloud.ops.move_in import move_in, office_call
from lgcloud.state.cards import CardReader, card_authority, cards, issue_card, open_card, read_card
from lgcloud.state.directory import state_dir

from .conftest import STACK

pytestmark = pytest.mark.live

PIN = "4321"
JST = ZoneInfo("Asia/Tokyo")


def opened(card: Path, pin: str = PIN) -> CardReader:
    return read_card(STACK, card, pin)


def card_verb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", "card", *args, "--stack", STACK],
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass(frozen=True)
class Scenario:
    portal: str  # the portal's internet address
    metrics: str  # its mgmt address
    before: CardReader  # Ａ市's card, issued before the 転出
    after: CardReader  # Ｂ町's card, issued after the 転入
    moved: dict  # the move-in's result
    signed_in_before_moving: int  # the status Ａ市's card got before the move


@pytest.fixture(scope="module")
def scenario(configured, lab, dev, tmp_path_factory) -> Scenario:
    directory = tmp_path_factory.mktemp("cards")
    portal = lab.vm("portal").addresses["internet"]
    seen: dict[str, int] = {}

    def card_at_a_city(resident: dict) -> None:
        with Lab(dev) as ops:
            issue(ops, "a-city", resident["ref"], PIN, directory / "a-city.p12")
        seen["status"], _ = get(portal, "/", opened(directory / "a-city.p12"))

    with Lab(dev) as ops:
        moved = move_in(ops, "a-city", "b-town", 3_000_000, card_at_a_city)
    done = card_verb(
        "issue", "--municipality", "b-town", "--resident", moved.refs["b-town"], "--pin", PIN,
        "--out", str(directory / "b-town.p12"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Scenario(
        portal,
        lab.vm("portal").addresses["mgmt"],
        opened(directory / "a-city.p12"),
        opened(directory / "b-town.p12"),
        {"refs": moved.refs, "codes": moved.resident_codes, "request_id": moved.request_id},
        seen["status"],
    )


def get(address: str, path: str, card: CardReader | None = None, headers: dict | None = None) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(card_authority(STACK)))
    if card is not None:
        context.load_cert_chain(str(card.certificate), str(card.key))
    connection = http.client.HTTPSConnection(address, 443, context=context, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def sign_ins(address: str) -> dict[str, float]:
    connection = http.client.HTTPConnection(address, PORTAL_METRICS_PORT, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    return {m[0]: float(m[1]) for m in re.findall(r'^portal_sign_ins_total\{outcome="([^"]+)"\} (\S+)$', text, re.M)}


def recorded(vm) -> dict[str, int]:
    """The portal's own sign-in records, by outcome."""
    out = vm("portal").check_output(
        "python3 -c \"import sqlite3; print(dict(sqlite3.connect('/var/lib/portal/portal.sqlite3')"
        ".execute('SELECT outcome, count(*) FROM sign_ins GROUP BY outcome').fetchall()))\""
    )
    return {k: int(v) for k, v in json.loads(out.replace("'", '"')).items()}


def foreign_card(directory: Path) -> CardReader:
    """A client certificate of a CA that is not J-LIS's, with the card's subject."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "利用者証明用電子証明書")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    pem = CardReader(directory / "foreign.p12", directory / "foreign.crt", directory / "foreign.key")
    pem.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pem


def test_a_card_opens_with_its_pin_and_a_wrong_one_is_counted_against_it(scenario, dev):
    assert open_card(scenario.after.card, PIN).subject.rfc4514_string().endswith("利用者証明用電子証明書")
    assert scenario.after.card.stat().st_mode & 0o777 == 0o600
    wrong = card_verb("open", "--card", str(scenario.after.card), "--pin", "0000")
    assert wrong.returncode == 2 and "2 more wrong PINs lock the card" in wrong.stderr, wrong.stderr
    started = subprocess.run(  # what `make up` starts; it keeps running when it does
        [sys.executable, "-m", "lgcloud.cli", "exporter", "--detach", "--stack", STACK], capture_output=True, timeout=60
    )
    assert started.returncode == 0, started.stderr
    exporter = http.client.HTTPConnection(exporter_address(dev), EXPORTER_PORT, timeout=10)
    exporter.request("GET", "/metrics")
    shown = exporter.getresponse().read().decode()
    assert re.search(r'^lgcloud_card_pin_failures\{municipality="b-town"\} [1-9]', shown, re.M), "not counted"
    right = card_verb("open", "--card", str(scenario.after.card), "--pin", PIN)
    assert right.returncode == 0, right.stderr  # and the count starts again
    assert not [c for c in cards(STACK, "b-town") if c.pin_failures]


def test_without_a_card_or_with_forged_headers_the_portal_refuses_counts_and_records(scenario, vm):
    before, kept = sign_ins(scenario.metrics), recorded(vm)
    status, page = get(scenario.portal, "/history")
    assert status == 401 and "提示されませんでした" in page
    # Headers that claim a verified card, sent by a client with none: HAProxy sets its own.
    serial = f"{open_card(scenario.after.card, PIN).serial_number:x}"
    forged = {"X-Card-Used": "1", "X-Card-Verify": "0", "X-Card-Serial": serial}
    status, page = get(scenario.portal, "/history", headers=forged)
    assert status == 401 and "提示されませんでした" in page and "記録" not in page.split("<main>")[1]
    assert sign_ins(scenario.metrics).get("no-card", 0) == before.get("no-card", 0) + 2
    assert recorded(vm).get("no-card", 0) == kept.get("no-card", 0) + 2
    # With a valid card, headers naming another card (the person's old one, which the broker
    # would answer "moved" for): the page is the presented card's.
    other = f"{open_card(scenario.before.card, PIN).serial_number:x}"
    forged = {"X-Card-Serial": other, "X-Card-Verify": "0"}
    status, page = get(scenario.portal, "/history", scenario.after, headers=forged)
    assert status == 200 and "個人住民税の賦課" in page
    status, _ = get(scenario.portal, "/history", scenario.after, headers={"X_Card_Serial": other})
    assert status == 400  # a name the app could read as the verdict's is refused at the front


def test_an_expired_card_and_a_foreign_cas_are_refused_with_what_is_wrong(scenario, vm, tmp_path):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    issue_card(STACK, "b-town", str(uuid.uuid4()), PIN, past, tmp_path / "expired.p12")
    before = sign_ins(scenario.metrics)
    status, page = get(scenario.portal, "/", opened(tmp_path / "expired.p12"))
    assert status == 401 and "有効期限が切れています" in page
    status, page = get(scenario.portal, "/", foreign_card(tmp_path))
    assert status == 401 and "公的個人認証サービスの利用者証明用電子証明書ではありません" in page
    after = sign_ins(scenario.metrics)
    assert after["expired"] == before["expired"] + 1 and after["foreign-ca"] == before["foreign-ca"] + 1
    kept = recorded(vm)
    assert kept["expired"] >= 1 and kept["foreign-ca"] >= 1


def test_after_the_move_the_old_card_is_refused_and_the_new_one_signs_in(scenario):
    assert scenario.signed_in_before_moving == 200  # Ａ市's card worked while the person lived there
    status, page = get(scenario.portal, "/", scenario.before)
    # Revoked as the move-in's CLI does it (`lgcloud card list` revokes the cards of those who moved).
    listed = card_verb("list", "--json")
    assert listed.returncode == 0, listed.stderr
    states = {c["serial"]: c["state"] for c in json.loads(listed.stdout)}
    serial = f"{open_card(scenario.before.card, PIN).serial_number:x}"
    assert states[serial] == "revoked (moved)"
    # Before the CRL reached the portal, the broker already knew: the card's facts changed.
    assert status == 403 and "が変わったため" in page
    status, page = get(scenario.portal, "/", scenario.before)
    assert status == 401 and "失効しています" in page
    assert get(scenario.portal, "/", scenario.after)[0] == 200


def test_a_revoked_card_is_refused_at_the_next_sign_in(scenario, dev, tmp_path):
    """Ｂ町 issues the person a second card (再交付): the first one is superseded at once."""
    with Lab(dev) as ops:
        issue(ops, "b-town", scenario.moved["refs"]["b-town"], "1111", tmp_path / "again.p12")
    again = opened(tmp_path / "again.p12", "1111")
    try:
        status, page = get(scenario.portal, "/", scenario.after)
        assert status == 401 and "失効しています" in page
        assert get(scenario.portal, "/", again)[0] == 200
        revoked = card_verb("revoke", "--municipality", "b-town", "--resident", scenario.moved["refs"]["b-town"])
        assert revoked.returncode == 0, revoked.stderr
        status, page = get(scenario.portal, "/", again)
        assert status == 401 and "失効しています" in page
    finally:  # the tests below sign in with a valid card of the person again
        fresh = tmp_path / "third.p12"
        with Lab(dev) as ops:
            issue(ops, "b-town", scenario.moved["refs"]["b-town"], PIN, fresh)
        third = opened(fresh)
        for kept, new in zip(
            (scenario.after.card, scenario.after.certificate, scenario.after.key),
            (third.card, third.certificate, third.key),
        ):
            kept.write_bytes(new.read_bytes())


def test_another_persons_records_cannot_be_asked_for(scenario):
    """Whatever the path or parameters say, the page is the card's person's, and a page asked
    with more than that looks like one of a person with no records."""
    status, own = get(scenario.portal, "/history", scenario.after)
    assert status == 200 and "個人住民税の賦課" in own
    before = sign_ins(scenario.metrics).get("tampered", 0)
    other = f"{open_card(scenario.before.card, PIN).serial_number:x}"  # a card the broker knows
    for asked in (f"/history?serial={other}", f"/history/{other}", "/self?fugo=x"):
        status, page = get(scenario.portal, asked, scenario.after)
        assert status == 200 and ("記録はありません" in page or "表示できる情報はありません" in page), asked
        assert "個人住民税の賦課" not in page and "前年の所得" not in page, asked
    assert sign_ins(scenario.metrics)["tampered"] == before + 3


def test_the_exchange_is_listed_in_a_real_browser_and_refused_without_a_valid_card(scenario):
    from playwright.sync_api import sync_playwright

    artifacts = state_dir(STACK) / "artifacts"
    artifacts.mkdir(exist_ok=True)
    origin = f"https://{scenario.portal}"
    today = dt.datetime.now(JST).date()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            card = {"origin": origin, "pfxPath": str(scenario.after.card), "passphrase": PIN}
            context = browser.new_context(ignore_https_errors=True, client_certificates=[card], locale="ja-JP")
            page = context.new_page()
            page.goto(f"{origin}/history")
            row = page.locator("tbody tr", has_text="個人住民税の賦課").first
            cells = [c.strip() for c in row.locator("td").all_inner_texts()]
            assert cells[0].startswith(f"{today.year}年{today.month}月{today.day}日"), cells
            assert cells[1:] == ["Ｂ町", "Ａ市", "個人住民税の賦課", "前年の所得", "提供"], cells
            page.screenshot(path=str(artifacts / "portal-history.png"), full_page=True)
            page.goto(f"{origin}/self")
            assert "前年の課税情報" in page.content() and "前年の所得" in page.content()
            page.goto(f"{origin}/")
            assert f"令和{today.year - 2018}年度 個人住民税の税額が決定しました" in page.content()
            context.close()
            for certificates in ([], [{"origin": origin, "pfxPath": str(scenario.before.card), "passphrase": PIN}]):
                refused = browser.new_context(ignore_https_errors=True, client_certificates=certificates)
                answer = refused.new_page().goto(f"{origin}/history")
                assert answer is not None and answer.status == 401
                assert "ログインできません" in answer.text()
                refused.close()
        finally:
            browser.close()


def test_no_my_number_or_resident_code_reaches_the_portal(scenario, vm, lab, dev):
    with Lab(dev) as ops:
        numbers = {
            ops.sql(ops.pair(m).db, f"SELECT my_number FROM residents WHERE ref = '{ref}'")
            for m, ref in scenario.moved["refs"].items()
        }
    identifiers = set(scenario.moved["codes"].values()) | numbers
    assert all(len(i) in (11, 12) for i in identifiers), identifiers
    logs = subprocess.run(["docker", "logs", vm_resource(STACK, "portal")], capture_output=True, text=True)
    assert logs.returncode == 0 and "sign-in signed-in" in logs.stdout + logs.stderr  # the log was read
    found = vm("portal").run("grep -rhoaE '[0-9]{11,12}' /var/log /var/lib/portal")
    assert found.rc in (0, 1), found.stderr  # 1: nothing found; 2: it could not look
    files = found.stdout
    pages = "".join(get(scenario.portal, path, scenario.after)[1] for path in ("/", "/history", "/self"))
    for where, text in (("log", logs.stdout + logs.stderr), ("files", files), ("pages", pages)):
        assert not [i for i in identifiers if i in text], f"a number of the person in the portal's {where}"


def test_what_the_portal_shows_is_escaped(scenario, dev):
    """A 副本 whose item and value hold HTML (a tenant's app registered it): shown as text."""
    with Lab(dev) as ops:
        ref = scenario.moved["refs"]["b-town"]
        atena = ops.sql(
            ops.pair("b-town").db,
            f"SELECT atena_number FROM atena JOIN residents USING (resident_code) WHERE ref = '{ref}'",
        )
        chukan = ops.topology.vm("chukan").addresses["b-town-center"]
        fuhon = {
            "atena_number": atena,
            "item": "<i>世帯情報</i>",
            "system": "jumin",
            "value": {"世帯主": "<script>alert('x')</script>"},
        }
        answer = ops.run(
            "b-town-app",
            f"curl -sS -H 'Content-Type: application/json' --data-binary @- http://{chukan}:8600/api/fuhon",
            stdin=json.dumps(fuhon, ensure_ascii=False),
        )
    assert json.loads(answer).get("registered"), answer
    status, page = get(scenario.portal, "/self", scenario.after)
    assert status == 200
    assert "&lt;i&gt;世帯情報&lt;/i&gt;" in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<script>alert" not in page and "<i>世帯情報" not in page


def test_a_change_of_name_revokes_the_card_and_the_new_name_is_shown_escaped(scenario, dev, tmp_path):
    """Ｂ町 writes a change of name (to one holding HTML) into the person's 住民票: the broker refuses
    the card at once (its facts changed), J-LIS revokes it, the name before is kept, and the card
    Ｂ町 issues next shows the new name on 自己情報表示 as text."""
    ref = scenario.moved["refs"]["b-town"]
    serial = f"{open_card(scenario.after.card, PIN).serial_number:x}"
    new_name = "<b>山田</b> 花子"
    change = {"name": new_name, "kana": "ヤマダ ハナコ", "event_date": dt.datetime.now(JST).date().isoformat()}
    try:
        with Lab(dev) as ops:
            session = sign_in(ops, "b-town")
            status, answer = office_call(ops, session, "jumin", "POST", f"/api/residents/{ref}/name-change", change)
            assert status == 200, answer
            assert answer["resident"]["name"] == new_name and "my_number" not in answer["resident"]
            again = office_call(ops, session, "jumin", "POST", f"/api/residents/{ref}/name-change", change)
            assert again[0] == 409 and again[1]["field"] == "name", again  # the same name is no change
            kept = ops.sql(ops.pair("b-town").db, f"SELECT count(*) FROM name_changes WHERE ref = '{ref}'")
        assert kept == "1", "the name before the change was not kept"
        # The 住民票関係情報 副本 reaches the 中間サーバー through atena-link within seconds.
        deadline = time.monotonic() + 30
        while (seen := get(scenario.portal, "/", scenario.after))[0] == 200 and time.monotonic() < deadline:
            time.sleep(1)
        assert seen[0] == 403 and "が変わったため" in seen[1]
        listed = card_verb("list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert {c["serial"]: c["state"] for c in json.loads(listed.stdout)}[serial] == "revoked (renamed)"
        seen = get(scenario.portal, "/", scenario.after)
        assert seen[0] == 401 and "失効しています" in seen[1]
    finally:  # whatever happened, the person has a valid card again, and it shows the name as text
        with Lab(dev) as ops:
            issue(ops, "b-town", ref, PIN, tmp_path / "renamed.p12")
        renamed = opened(tmp_path / "renamed.p12")
        for kept_file, new in zip(
            (scenario.after.card, scenario.after.certificate, scenario.after.key),
            (renamed.card, renamed.certificate, renamed.key),
        ):
            kept_file.write_bytes(new.read_bytes())
    status, page = get(scenario.portal, "/self", renamed)
    assert status == 200 and "&lt;b&gt;山田&lt;/b&gt; 花子" in page and "<b>山田" not in page
