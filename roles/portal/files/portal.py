"""マイ・ポータル of the lab: a citizen signs in with their 個人番号カード and sees, in Japanese, the
情報提供等記録 about them (やりとり履歴), what the municipalities' 副本 hold (自己情報表示) and
the お知らせ those make.

Runs under gunicorn on the `portal` VM, behind the VM's HAProxy, which terminates TLS on
`internet`, asks for the card's certificate, checks it against the card CA and its CRL, and passes
the verdict on in headers it sets itself (X-Card-Used, X-Card-Verify, X-Card-Serial; whatever a
client sent under those names is removed first). The pages come from the broker's read API, the
only thing this VM may call: asked with the certificate's serial, it answers with the person's
records; the portal is never told a 個人番号 or a 住民票コード. Settings from ``PORTAL_CONFIG``::

    {"api": "http://10.100.5.20:8610", "data_dir": "/var/lib/portal", "pages_port": 8611,
     "metrics_port": 9120}

Every sign-in, accepted or not, is counted (``portal_sign_ins_total{outcome}``) and recorded in
the portal's own database, with the card's serial and never more of the person.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Flask, abort, render_template, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

SETTINGS = json.loads(Path(os.environ.get("PORTAL_CONFIG", "/etc/portal/portal.json")).read_text(encoding="utf-8"))
DATA = Path(SETTINGS["data_dir"])
API_TIMEOUT = float(SETTINGS.get("api_timeout_seconds", 25))  # the broker may wait 8 s for each 中間サーバー
JST = ZoneInfo("Asia/Tokyo")
log = logging.getLogger("gunicorn.error")

# What HAProxy's verification result (an OpenSSL X509_V_ERR code) means for the person at the door.
REFUSALS = {
    "no-card": "個人番号カードの利用者証明用電子証明書が提示されませんでした。カードを読み取ってから、もう一度お試しください。",
    "expired": "この利用者証明用電子証明書は有効期限が切れています。お住まいの市区町村の窓口で更新してください。",
    "revoked": "この利用者証明用電子証明書は失効しています（転出・氏名の変更・再交付など）。お住まいの市区町村の窓口で新しい証明書の発行を受けてください。",
    "foreign-ca": "この証明書は公的個人認証サービスの利用者証明用電子証明書ではありません。",
    "invalid": "この証明書を確認できませんでした。",
    "moved": "カードの記載事項（住所・氏名）が変わったため、この証明書は使えません。お住まいの市区町村の窓口で新しい証明書の発行を受けてください。",
}
_VERIFY = {"10": "expired", "23": "revoked", "2": "foreign-ca", "20": "foreign-ca", "21": "foreign-ca"}

SIGN_INS = Counter("portal_sign_ins", "Sign-ins to マイ・ポータル by outcome", ["outcome"])
for _outcome in ("signed-in", "tampered", *REFUSALS):
    SIGN_INS.labels(_outcome)
PAGE_SECONDS = Histogram("portal_page_seconds", "Seconds to answer a page, the read API included", ["page"])
API_FAILURES = Counter("portal_api_failures", "Pages the broker's read API did not answer for")

app = Flask(__name__)
app.jinja_env.autoescape = True  # every value on every page is escaped, whatever it holds

SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS sign_ins (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    outcome TEXT NOT NULL,  -- signed-in, tampered, or a key of REFUSALS
    serial  TEXT,           -- the certificate's serial, when one was presented
    page    TEXT NOT NULL
);
"""
with sqlite3.connect(DATA / "portal.sqlite3") as _first:
    _first.executescript(SCHEMA)


def local_port() -> int:
    return request.environ["gunicorn.socket"].getsockname()[1]


@app.before_request
def one_purpose_per_port() -> None:
    """Pages on the port HAProxy forwards to; the metrics on mgmt's; nothing crosses."""
    on_metrics = local_port() == SETTINGS["metrics_port"]
    if on_metrics != (request.path == "/metrics"):
        abort(404)


@app.get("/metrics")
def metrics():
    return generate_latest(), 200, {"Content-Type": CONTENT_TYPE_LATEST}


def record(outcome: str, serial: str | None, page: str) -> None:
    """A sign-in counted and kept, with the page's name (never the path a client sent)."""
    SIGN_INS.labels(outcome).inc()
    with sqlite3.connect(DATA / "portal.sqlite3", timeout=10) as db:
        db.execute(
            "INSERT INTO sign_ins (at, outcome, serial, page) VALUES (?, ?, ?, ?)",
            (dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), outcome, serial, page),
        )
    log.info("sign-in %s on %s", outcome, page)


def card_serial() -> tuple[str | None, str | None]:
    """(the serial of a verified card, None) or (the serial presented if any, why it is refused)."""
    used = request.headers.get("X-Card-Used") == "1"
    verdict = request.headers.get("X-Card-Verify", "")
    serial = request.headers.get("X-Card-Serial", "").lower().lstrip("0") or None
    if not used:
        return None, "no-card"
    if verdict != "0":
        return serial, _VERIFY.get(verdict, "invalid")
    return serial, None


def refused(reason: str, serial: str | None, page: str):
    record(reason, serial, page)
    return render_template("refused.html", message=REFUSALS[reason]), 401 if reason != "moved" else 403


def person(serial: str) -> dict | None:
    """The broker's answer about the card's person, or None when it does not answer."""
    raw = json.dumps({"request_id": str(uuid.uuid4()), "serial": serial}).encode()
    call = urllib.request.Request(
        f"{SETTINGS['api']}/portal/person", raw, {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(call, timeout=API_TIMEOUT) as response:
            return json.load(response)
    except (OSError, ValueError) as error:
        API_FAILURES.inc()
        log.warning("the read API does not answer: %s", type(error).__name__)
        return None


@app.template_filter("jst")
def jst(iso: str) -> str:
    """An ISO 8601 moment as a Japanese date and time (日本時間)."""
    at = dt.datetime.fromisoformat(iso).astimezone(JST)
    return f"{at.year}年{at.month}月{at.day}日 {at:%H:%M}"


@app.get("/favicon.ico")
def favicon():
    return "", 204  # asked by every browser on its own: no sign-in, nothing counted


PAGES = {"/": "notices", "/history": "history", "/self": "self"}


@app.get("/")
@app.get("/history")
@app.get("/self")
@app.get("/history/<path:other>")
@app.get("/self/<path:other>")
def page(other: str | None = None):
    name = PAGES.get(request.path) or request.path.split("/")[1]
    serial, refusal = card_serial()
    if refusal is not None:
        return refused(refusal, serial, name)
    assert serial is not None
    # The person is the card's, and nobody else: a page asked with anything that could name
    # another (a path below it, a parameter, a body) shows what a person with no records sees.
    tampered = other is not None or bool(request.args) or bool(request.get_data())
    template = f"{name}.html"
    with PAGE_SECONDS.labels(name).time():
        if tampered:
            record("tampered", serial, name)
            return render_template(template, held=[], records=[], notices=[], unavailable=[])
        found = person(serial)
        if found is None:
            return render_template("refused.html", message="ただいま情報を表示できません。しばらくしてからお試しください。"), 503
        if found.get("moved"):
            return refused("moved", serial, name)
        record("signed-in", serial, name)
        return render_template(
            template,
            held=found["held"],
            records=found["records"],
            notices=found["notices"],
            unavailable=found.get("unavailable", []),
        )
