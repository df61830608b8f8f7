"""情報提供ネットワークシステム (the broker) of the lab: 符号 per body, and brokered queries.

Runs under gunicorn on the `broker` VM (site `national`, on lgwan) and takes calls only from the
中間サーバー (its firewall admits nothing else). Every call is signed by the body it comes from
(linkage_core: body, timestamp, nonce, HMAC under the body's own key). Settings come from the JSON
file named by ``BROKER_CONFIG``::

    {"data_dir": "/var/lib/broker", "operators": ["10.100.0.1"],
     "permissions": [{"office": …, "provider": …, "items": […]}],
     "bodies": {"012025": {"name": "Ａ市", "key": "<hex>", "chukan": ["http://10.100.1.5:8600", …]}}}

- ``POST /fugo {"resident_code"}``: the calling body's 符号 of the person. The broker's key is
  made on this VM at its first start and never leaves it; the broker keeps, per body, the 符号 and
  a person key (another keyed one-way value), never the 住民票コード, which is in no table and no log.
- ``POST /query {"request_id", "fugo", "office", "provider", "provider_kind", "items"}``: allowed by
  the permission table, the requester's 符号 translated into the provider's, the provider's
  中間サーバー asked for the items from its 副本. A query the table forbids and one about a person
  the provider does not hold get the same answer: the requester learns nothing of who exists.
- Every brokered query, provided or refused, goes into the broker's own 情報提供等記録, a hash
  chain; one about a person the broker knows carries the person key, so that the person can be
  shown it. (What the portal reads is recorded by each tenant it is read from.)
- ``POST /cards {"fugo", "serial"}``: a 個人番号カード the calling body issued to the person.

On its internet address, for マイ・ポータル only (``portal`` in the settings; the firewall admits
nothing else there), and nothing else on that port: ``POST /portal/person {"request_id",
"serial"}``, the person the card's certificate names: the 情報提供等記録 about them, what each
body's 中間サーバー holds of them (自己情報表示), and the notices those 副本 make. The portal sends a
serial from a certificate its TLS front verified, never a number of the person, and is sent none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flask import g, jsonify, request
from linkage_core import (
    CARD_SERIAL,
    FUGO,
    GENESIS,
    REQUEST_ID,
    RESIDENT_CODE,
    AnsweredLast,
    Nonces,
    Refused,
    canonical,
    chain_hash,
    fugo,
    sign,
    verify,
)
from linkage_web import Answer, json_app, log, now

SETTINGS = json.loads(Path(os.environ.get("BROKER_CONFIG", "/etc/broker/broker.json")).read_text(encoding="utf-8"))
DATA = Path(SETTINGS["data_dir"])
BODIES = SETTINGS["bodies"]
KEYS = {code: bytes.fromhex(body["key"]) for code, body in BODIES.items()}
PERMISSIONS = {(row["office"], row["provider"]): set(row["items"]) for row in SETTINGS["permissions"]}
PROVIDER_TIMEOUT = float(SETTINGS.get("provider_timeout_seconds", 8))
OFFICES = {office for office, _ in PERMISSIONS}
KINDS = {kind for _, kind in PERMISSIONS}
ITEMS = set().union(*PERMISSIONS.values())
# What a requester is told whenever nothing is provided for a reason about the person or the
# table: the same words, so that nobody learns whether a person exists somewhere.
NOT_PROVIDED = (
    "nothing is provided for this query: the permission table does not allow it, "
    "or the provider holds nothing for this 符号"
)

app = json_app(__name__, "the broker failed to answer")
NONCES = Nonces()
_chain = threading.Lock()  # one writer of the chain at a time (gunicorn runs one process)


def broker_key() -> bytes:
    """The broker's own key: made here once (0600, written whole before it is put in place), never
    copied anywhere. A key file that is not 32 bytes stops the broker: 符号 under it could be guessed."""
    path = DATA / "broker.key"
    if not path.exists():
        fresh = DATA / f".broker.key.{os.getpid()}"
        descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(fresh, path)  # fails if another process put one in place first: that one wins
        except FileExistsError:
            pass
        finally:
            os.unlink(fresh)
    key = bytes.fromhex(path.read_text().strip() or "00")
    if len(key) != 32:
        raise SystemExit(f"{path} is not a 32-byte key; move it aside only if no 符号 was issued under it")
    return key


KEY = broker_key()

SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS issued (
    body      TEXT NOT NULL,
    fugo      TEXT NOT NULL,
    person    TEXT NOT NULL,  -- HMAC of the 住民票コード under the broker's key: links one person's 符号
    issued_at TEXT NOT NULL,
    PRIMARY KEY (body, fugo),
    UNIQUE (body, person)
);
CREATE TABLE IF NOT EXISTS records (
    position INTEGER PRIMARY KEY,
    record   TEXT NOT NULL,  -- canonical JSON: what the hash covers
    hash     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_person ON records (json_extract(record, '$.person'));
CREATE TABLE IF NOT EXISTS cards (
    serial        TEXT PRIMARY KEY,  -- the 利用者証明用電子証明書's serial, lowercase hex
    body          TEXT NOT NULL,     -- the municipality that issued the card
    fugo          TEXT NOT NULL,     -- the issuer's 符号 of the person
    registered_at TEXT NOT NULL,
    FOREIGN KEY (body, fugo) REFERENCES issued (body, fugo)
);
"""


def database() -> sqlite3.Connection:
    if "db" not in g:
        g.db = sqlite3.connect(DATA / "broker.sqlite3", timeout=10, isolation_level=None)
        g.db.execute("PRAGMA busy_timeout = 10000")
    return g.db


with sqlite3.connect(DATA / "broker.sqlite3") as _first:
    _first.executescript(SCHEMA)


@app.teardown_request
def disconnect(_error) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def signed_body() -> tuple[str, dict]:
    """The calling body's code and its JSON request, or Answer 401/400."""
    raw = request.get_data()
    try:
        body_code = verify(KEYS, request.headers, request.path, raw, NONCES)
    except Refused as refusal:
        log.warning("refused an unsigned or bad request on %s: %s", request.path, refusal)
        raise Answer(401, str(refusal)) from None
    try:
        body = json.loads(raw)
    except ValueError:
        raise Answer(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Answer(400, "the body must be a JSON object")
    return body_code, body


def person_key(resident_code: str) -> str:
    return hmac.new(KEY, f"person:{resident_code}".encode(), hashlib.sha256).hexdigest()


def append_record(db: sqlite3.Connection, record: dict) -> int:
    """The record at the end of the broker's chain; its position."""
    with _chain:
        db.execute("BEGIN IMMEDIATE")
        try:
            last = db.execute("SELECT position, hash FROM records ORDER BY position DESC LIMIT 1").fetchone()
            position, previous = (last[0] + 1, last[1]) if last else (0, GENESIS)
            text = canonical({"position": position, **record})
            db.execute("INSERT INTO records VALUES (?, ?, ?)", (position, text, chain_hash(previous, text)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return position


PORTAL = SETTINGS.get("portal", {})  # {"address", "port"}: マイ・ポータル, and the port it calls


def local_port() -> int:
    """The port the connection came in on, from its socket (a Host header could say anything)."""
    return request.environ["gunicorn.socket"].getsockname()[1]


@app.before_request
def one_api_per_port() -> None:
    """The portal's port serves its read API to the portal's address, and nothing else does."""
    on_portal_port = bool(PORTAL) and local_port() == PORTAL["port"]
    if on_portal_port != request.path.startswith("/portal/"):
        raise Answer(404, "no such API on this port")
    if on_portal_port and request.remote_addr != PORTAL["address"]:
        raise Answer(403, "the portal's API answers マイ・ポータル only")


@app.get("/healthz")
def healthz():
    count = database().execute("SELECT count(*) FROM issued").fetchone()[0]
    return jsonify({"status": "ok", "bodies": len(BODIES), "issued": count})


@app.post("/fugo")
def issue():
    body_code, body = signed_body()
    resident_code = body.get("resident_code")
    if not isinstance(resident_code, str) or not RESIDENT_CODE.fullmatch(resident_code):
        raise Answer(400, "resident_code must be a 住民票コード: 11 digits")
    token, person = fugo(KEY, body_code, resident_code), person_key(resident_code)
    db = database()
    db.execute(
        "INSERT INTO issued (body, fugo, person, issued_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (body_code, token, person, now()),
    )
    return jsonify({"fugo": token})


_answered_last = AnsweredLast()  # per provider, its 中間サーバー that answered last


def ask_provider(provider: str, payload: dict, path: str = "/provide") -> tuple[int, dict]:
    """The provider's 中間サーバー's answer to a POST of `path`, from the one that answered last, else
    the other (a failover moved it); (503, {}) when neither answers."""
    raw = json.dumps(payload, ensure_ascii=False).encode()
    bases = _answered_last.order(provider, BODIES[provider]["chukan"])
    last: tuple[int, dict] = (503, {})
    for base in bases:
        headers = sign(KEYS[provider], provider, path, raw, secrets.token_urlsafe(18)).headers()
        call = urllib.request.Request(
            f"{base}{path}", raw, {**headers, "Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(call, timeout=PROVIDER_TIMEOUT) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        except OSError:
            continue
        try:
            answer = json.loads(text or b"{}")
        except ValueError:
            answer = {}
        last = (status, answer if isinstance(answer, dict) else {})
        if status != 503:  # 503: that 中間サーバー reaches no primary of the tenant; try the other
            _answered_last.answered(provider, base)
            return last
    return last


@app.post("/query")
def query():
    requester, body = signed_body()
    request_id, token = body.get("request_id"), body.get("fugo")
    office, provider, kind, items = (
        body.get("office"),
        body.get("provider"),
        body.get("provider_kind"),
        body.get("items"),
    )
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        raise Answer(400, "request_id must be a UUID the requester chose")
    if not isinstance(token, str) or not FUGO.fullmatch(token):
        raise Answer(400, "fugo must be the requester's 符号 of the person (32 base32 characters)")
    if not isinstance(office, str) or not isinstance(kind, str) or not isinstance(provider, str):
        raise Answer(400, "office, provider and provider_kind are required strings")
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise Answer(400, "items must be a non-empty list of data items")
    record = {
        "at": now(),
        "request_id": request_id,
        "requester": requester,
        "provider": provider,
        "office": office,
        "provider_kind": kind,
        "items": sorted(set(items)),
    }
    if office not in OFFICES or kind not in KINDS or not set(items) <= ITEMS:
        # Nothing the table does not name is stored or echoed: a free text could carry anything.
        raise Answer(400, "office, provider_kind and items must be ones the permission table names")
    db = database()
    reason = None
    allowed = PERMISSIONS.get((office, kind))
    if provider not in BODIES:
        raise Answer(400, "provider must be a body of the network (a 地方公共団体コード)")
    if provider == requester:
        reason = "a body does not query itself"
    elif allowed is None:
        reason = f"{office} may not ask a {kind} for anything"
    elif not set(items) <= allowed:
        reason = f"{office} may not receive {', '.join(sorted(set(items) - allowed))} from a {kind}"
    if reason is not None:  # the table's answer, whoever the person is
        position = append_record(db, {**record, "outcome": "refused", "reason": reason})
        return jsonify({"provided": False, "error": NOT_PROVIDED, "record": position}), 403
    mine = db.execute("SELECT person FROM issued WHERE body = ? AND fugo = ?", (requester, token)).fetchone()
    theirs = None
    if mine is None:
        reason = "the 符号 is not one the broker issued to the requester"
    else:
        record["person"] = mine[0]
        theirs = db.execute("SELECT fugo FROM issued WHERE body = ? AND person = ?", (provider, mine[0])).fetchone()
        if theirs is None:
            reason = "the provider holds no 符号 of this person"
    # About the person, the provider is asked all the same (of a 符号 it cannot hold when the
    # broker refuses): a refusal and a provision take the same path, and a provider that is down
    # answers the same whoever is asked about.
    asked = (
        theirs[0] if reason is None and theirs is not None else fugo(KEY, provider, f"{secrets.randbelow(10**11):011d}")
    )
    started = time.monotonic()
    status, answer = ask_provider(
        provider,
        {
            "request_id": request_id,
            "fugo": asked,
            "office": office,
            "provider_kind": kind,
            "requester": requester,
            "items": record["items"],
        },
    )
    took = round((time.monotonic() - started) * 1000)
    if status >= 500 or status in (400, 401):
        outcome = "provider-unavailable" if status >= 500 else "error"
        position = append_record(
            db, {**record, "outcome": outcome, "reason": reason or f"the provider answered {status}"}
        )
        return jsonify({"provided": False, "error": "the provider does not answer now", "record": position}), 503
    if reason is not None or status != 200:
        position = append_record(
            db, {**record, "outcome": "refused", "reason": reason or "the provider holds no 副本 of these items"}
        )
        return jsonify({"provided": False, "error": NOT_PROVIDED, "record": position}), 403
    position = append_record(db, {**record, "outcome": "provided", "provider_ms": took})
    return jsonify({"provided": True, "items": answer.get("items", {}), "record": position})


@app.get("/records")
def records():
    """The broker's 情報提供等記録, for the operators only (over mgmt): ?after=<position>&limit=."""
    if request.remote_addr not in SETTINGS["operators"]:
        raise Answer(403, "the broker's records are for the operators")
    after = request.args.get("after", "-1")
    limit = request.args.get("limit", "100")
    if not after.lstrip("-").isdigit() or not limit.isdigit():
        raise Answer(400, "after and limit are whole numbers")
    rows = database().execute(
        "SELECT position, record, hash FROM records WHERE position > ? ORDER BY position LIMIT ?",
        (int(after), min(int(limit), 1000)),
    )
    return jsonify({"records": [{"position": p, "record": json.loads(r), "hash": h} for p, r, h in rows]})


@app.post("/cards")
def register_card():
    """A card the calling body issued to the person of this 符号 (its own, as the broker gave it)."""
    body_code, body = signed_body()
    token, serial = body.get("fugo"), body.get("serial")
    if not isinstance(token, str) or not FUGO.fullmatch(token):
        raise Answer(400, "fugo must be the body's 符号 of the person")
    if not isinstance(serial, str) or not CARD_SERIAL.fullmatch(serial):
        raise Answer(400, "serial must be the card certificate's serial, lowercase hex")
    db = database()
    if db.execute("SELECT 1 FROM issued WHERE body = ? AND fugo = ?", (body_code, token)).fetchone() is None:
        raise Answer(409, "the 符号 is not one the broker issued to this body")
    db.execute("INSERT INTO cards VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", (serial, body_code, token, now()))
    held = db.execute("SELECT body, fugo FROM cards WHERE serial = ?", (serial,)).fetchone()
    if tuple(held) != (body_code, token):
        raise Answer(409, "a card of this serial is registered to another person")
    return jsonify({"serial": serial, "registered": True}), 201


SELF_DISCLOSURE = "自己情報表示"
RESIDENCE_FACTS = "住民票関係情報"  # the 副本 the registry registers anew when the card's 氏名 changes


def reiwa(year: int) -> str:
    return "元" if year == 2019 else str(year - 2018)


def notices(name: str, held: dict) -> list[dict]:
    """The お知らせ a body's 副本 make for the person: an assessed 個人住民税, so far."""
    taxation = held.get("前年の課税情報", {})
    value = taxation.get("value") or {}
    if not isinstance(value.get("年度"), int):
        return []
    return [
        {
            "at": taxation["registered_at"],
            "from": name,
            "text": f"令和{reiwa(value['年度'])}年度 個人住民税の税額が決定しました",
        }
    ]


def changed_since(items: dict, card_registered: str) -> bool:
    """Whether the issuer registered the person's 住民票関係情報 (氏名) anew after the card: a
    name change is a change of the card's facts, as a move away is."""
    facts = items.get(RESIDENCE_FACTS)
    if not isinstance(facts, dict):
        return False
    return dt.datetime.fromisoformat(facts["registered_at"]) > dt.datetime.fromisoformat(card_registered)


@app.post("/portal/person")
def portal_person():
    """The person of the card: their 情報提供等記録, 自己情報 and お知らせ. A card the broker does not
    know and a person with nothing recorded get the same empty answer."""
    try:
        body = json.loads(request.get_data())
    except ValueError:
        raise Answer(400, "the body must be a JSON object") from None
    request_id, serial = (body.get("request_id"), body.get("serial")) if isinstance(body, dict) else (None, None)
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        raise Answer(400, "request_id must be a UUID the portal chose")
    if not isinstance(serial, str) or not CARD_SERIAL.fullmatch(serial):
        raise Answer(400, "serial must be a certificate serial, lowercase hex")
    db = database()
    card = db.execute(
        "SELECT cards.body, issued.person, cards.registered_at FROM cards JOIN issued USING (body, fugo)"
        " WHERE serial = ?",
        (serial,),
    ).fetchone()
    empty = {"moved": False, "records": [], "held": [], "notices": []}
    if card is None:
        return jsonify(empty)
    issuer, person, card_registered = card
    bodies = db.execute("SELECT body, fugo FROM issued WHERE person = ? ORDER BY body", (person,)).fetchall()
    # Every body at once: a lost site costs one provider timeout, not one per body.
    with ThreadPoolExecutor(max(1, len(bodies))) as pool:
        answers = list(
            pool.map(
                lambda row: ask_provider(row[0], {"request_id": request_id, "fugo": row[1]}, "/portal-held"), bodies
            )
        )
    held, moved, unavailable = [], False, []
    for (code, _), (status, answer) in zip(bodies, answers):
        if status != 200:
            if code == issuer:  # whether the card's person still lives there cannot be told: nothing shown
                raise Answer(503, "the card's issuing municipality does not answer now")
            unavailable.append(BODIES[code]["name"])
            continue
        items = answer.get("items") or {}
        if code == issuer and (answer.get("residence") == "former" or changed_since(items, card_registered)):
            moved = True  # the card's facts changed: J-LIS revokes it; until then it shows nothing
        if items:
            held.append({"body": code, "name": BODIES[code]["name"], "items": items})
    if moved:
        return jsonify({**empty, "moved": True})
    rows = db.execute(
        "SELECT position, record FROM records WHERE json_extract(record, '$.person') = ? ORDER BY position DESC",
        (person,),
    )
    records = []
    for position, text in rows:
        r = json.loads(text)
        records.append(
            {
                "position": position,
                "at": r["at"],
                "requester": BODIES.get(r["requester"], {}).get("name", r["requester"]),
                "provider": BODIES.get(r["provider"], {}).get("name", r["provider"]),
                "office": r["office"],
                "items": r["items"],
                "outcome": r["outcome"],
            }
        )
    shown = [n for h in held for n in notices(h["name"], h["items"])]
    return jsonify({"moved": False, "records": records, "held": held, "notices": shown, "unavailable": unavailable})
