"""中間サーバー of the lab, jointly used by every municipality: one tenant each, its data in a
database of the municipality's own cluster (``chukan``), reached over the interconnect wherever that
cluster's primary is now.

Runs under gunicorn on `chukan` (center) and `chukan-standby` (backup site). A municipality's app
VM calls it on the address it has on that municipality's closed segment, and the tenant is the one
that address belongs to (a VM cannot take another's address: no NET_ADMIN, no NET_RAW). The broker
calls it on lgwan, signed with the providing tenant's key. Settings come from ``CHUKAN_CONFIG``::

    {"broker": "http://10.100.1.4:8700",
     "tenants": {"012025": {"id": "a-city", "name": "Ａ市", "key": "<hex>", "apps": ["10.100.16.10", …],
                            "dsn": "host=10.100.4.10,10.100.4.11 dbname=chukan user=chukan …"}}}

For the municipality's systems (their own tenant only):
- ``POST /api/link {"atena_number", "resident_code"}``: asks the broker for the tenant's 符号 of the
  person and keeps it beside the 宛名番号; the 住民票コード passes through, kept nowhere here.
- ``POST /api/fuhon {"atena_number", "item", "value", "system"}``: registers a 副本.
- ``POST /api/query {"atena_number", "office", "provider", "provider_kind", "items"}``: asks another
  body through the broker; both the request and the answer go into the tenant's 情報提供等記録.
- ``GET /api/records``: the tenant's 情報提供等記録.
- ``GET /api/health``: whether the tenant's database (at a primary) and the broker answer.
- ``POST /api/cards {"atena_number", "serial"}``: registers a 個人番号カード the municipality
  issued at the broker, under the person's 符号 (マイ・ポータル knows the person by it).

For the broker:
- ``POST /provide {"request_id", "fugo", "office", "requester", "items"}``: answers from the
  providing tenant's 副本 and records the provision.
- ``POST /portal-held {"request_id", "fugo"}``: for マイ・ポータル's 自己情報表示, every 副本 the
  tenant holds of the person and whether they still live here; recorded as a provision.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from flask import jsonify, request
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
    sign,
    verify,
)
from linkage_web import Answer, json_app, log, now

SETTINGS = json.loads(Path(os.environ.get("CHUKAN_CONFIG", "/etc/chukan/chukan.json")).read_text(encoding="utf-8"))
TENANTS = SETTINGS["tenants"]
KEYS = {code: bytes.fromhex(t["key"]) for code, t in TENANTS.items()}
BY_ADDRESS = {address: code for code, t in TENANTS.items() for address in t["apps"]}
BROKER = SETTINGS["broker"]
BROKER_TIMEOUT = float(SETTINGS.get("broker_timeout_seconds", 8))
ATENA_NUMBER = re.compile(r"[0-9]{10}")
ITEM = re.compile(r"[^\x00-\x1f]{1,40}")
SYSTEMS = ("jumin", "zei")
# What a query may name: the permission table's 事務, kinds of provider and items (the broker
# decides what is allowed; nothing else is sent on, or written into a record).
OFFICES = {row["office"] for row in SETTINGS["permissions"]}
KINDS = {row["provider"] for row in SETTINGS["permissions"]}
ITEMS = {item for row in SETTINGS["permissions"] for item in row["items"]}

app = json_app(__name__, "the 中間サーバー failed to answer; nothing was written")
NONCES = Nonces()


@app.errorhandler(psycopg2.OperationalError)
def database_unreachable(error):
    log.warning("a tenant's database does not answer: %s", type(error).__name__)
    return jsonify({"error": "the tenant's database does not answer (no primary reachable)"}), 503


# Per tenant, the host that was its primary at the last connection: tried first, so that a lost
# site costs one connect timeout, not one per connection of every request.
_primary_first = AnsweredLast()


@contextmanager
def tenant_db(code: str):
    """A cursor in one transaction on the tenant's database, at whichever side is the primary."""
    params = psycopg2.extensions.parse_dsn(TENANTS[code]["dsn"])
    hosts = _primary_first.order(code, params["host"].split(","))
    conn = psycopg2.connect(**{**params, "host": ",".join(hosts)})
    _primary_first.answered(code, conn.info.host)
    try:
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            yield cur
    finally:
        conn.close()


def append_record(cur, record: dict) -> int:
    """A 情報提供等記録 at the end of the tenant's chain, in the caller's transaction."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('chukan records'))")
    cur.execute("SELECT position, hash FROM chukan.records ORDER BY position DESC LIMIT 1")
    last = cur.fetchone()
    position, previous = (last["position"] + 1, last["hash"]) if last else (0, GENESIS)
    text = canonical({"position": position, **record})
    cur.execute("INSERT INTO chukan.records VALUES (%s, %s, %s)", (position, text, chain_hash(previous, text)))
    return position


def calling_tenant() -> str:
    """The municipality whose app VM this request comes from, or 403."""
    code = BY_ADDRESS.get(request.remote_addr)
    if code is None:
        raise Answer(403, "only a municipality's app VMs call the 中間サーバー's API")
    return code


def json_body(raw: bytes | None = None) -> dict:
    try:
        body = json.loads(request.get_data() if raw is None else raw)
    except ValueError:
        raise Answer(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Answer(400, "the body must be a JSON object")
    return body


def field(body: dict, name: str, pattern: re.Pattern, what: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Answer(400, f"{name} must be {what}", field=name)
    return value


def items_in(body: dict) -> list[str]:
    items = body.get("items")
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and ITEM.fullmatch(i) for i in items):
        raise Answer(400, "items must be a non-empty list of data items", field="items")
    return items


def call_broker(code: str, path: str, payload: dict) -> tuple[int, dict]:
    raw = json.dumps(payload, ensure_ascii=False).encode()
    headers = sign(KEYS[code], code, path, raw, secrets.token_urlsafe(18)).headers()
    call = urllib.request.Request(
        f"{BROKER}{path}", raw, {**headers, "Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(call, timeout=BROKER_TIMEOUT) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"{}")
        except ValueError:
            return error.code, {}
    except (OSError, ValueError) as error:
        log.warning("the broker does not answer: %s", type(error).__name__)
        return 503, {"error": "the broker does not answer"}


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "tenants": len(TENANTS)})


@app.get("/api/health")
def health():
    """The calling tenant's linkage, asked about nobody: its database at a primary, and the broker."""
    code = calling_tenant()
    with tenant_db(code) as cur:  # unreachable: 503 from the handler above
        cur.execute("SELECT pg_is_in_recovery() AS replica")
        cur.fetchone()
    try:
        with urllib.request.urlopen(f"{BROKER}/healthz", timeout=BROKER_TIMEOUT) as response:
            response.read()
    except OSError as error:
        log.warning("the broker does not answer its health check: %s", type(error).__name__)
        raise Answer(503, "the broker does not answer") from None
    return jsonify({"status": "ok", "tenant": "primary reachable", "broker": "ok"})


@app.post("/api/link")
def link():
    code = calling_tenant()
    body = json_body()
    atena_number = field(body, "atena_number", ATENA_NUMBER, "a 宛名番号: 10 digits")
    resident_code = field(body, "resident_code", RESIDENT_CODE, "a 住民票コード: 11 digits")
    residence = body.get("status", "current")
    if residence not in ("current", "former"):
        raise Answer(400, "status is current (the person lives here) or former (moved away)", field="status")
    # Asked every time: the 符号 is the broker's to say, and a 宛名番号 linked before must be linked
    # to this person, not another.
    status, answer = call_broker(code, "/fugo", {"resident_code": resident_code})
    if status != 200:
        raise Answer(503 if status >= 500 else 502, f"the broker refused or failed: {answer.get('error', status)}")
    token = answer.get("fugo")
    if not isinstance(token, str) or not FUGO.fullmatch(token):
        raise Answer(502, "the broker's answer holds no 符号")
    with tenant_db(code) as cur:
        cur.execute(
            "INSERT INTO chukan.linked (atena_number, fugo) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (atena_number, token),
        )
        if cur.rowcount == 0:
            cur.execute(
                "SELECT atena_number, fugo FROM chukan.linked WHERE atena_number = %s OR fugo = %s",
                (atena_number, token),
            )
            if [(r["atena_number"], r["fugo"]) for r in cur.fetchall()] != [(atena_number, token)]:
                raise Answer(409, "the 宛名番号 or the person is linked already, to another person or 宛名番号")
        cur.execute(
            "UPDATE chukan.linked SET residence = %s, residence_at = now() WHERE atena_number = %s AND residence <> %s",
            (residence, atena_number, residence),
        )
    return jsonify({"atena_number": atena_number, "linked": True, "status": residence})


@app.post("/api/fuhon")
def register_fuhon():
    code = calling_tenant()
    body = json_body()
    atena_number = field(body, "atena_number", ATENA_NUMBER, "a 宛名番号: 10 digits")
    item = field(body, "item", ITEM, "the data item's name (up to 40 characters)")
    system = body.get("system")
    if system not in SYSTEMS:
        raise Answer(400, f"system must be one of {', '.join(SYSTEMS)}", field="system")
    value = body.get("value")
    if not isinstance(value, dict) or not value:
        raise Answer(400, "value must be a JSON object: the 副本's content", field="value")
    with tenant_db(code) as cur:
        cur.execute(
            "INSERT INTO chukan.fuhon (atena_number, item, value, registered_by) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (atena_number, item) DO UPDATE SET value = EXCLUDED.value,"
            " registered_by = EXCLUDED.registered_by, registered_at = now()",
            (atena_number, item, json.dumps(value, ensure_ascii=False), system),
        )
    return jsonify({"atena_number": atena_number, "item": item, "registered": True}), 201


@app.post("/api/query")
def query():
    code = calling_tenant()
    body = json_body()
    atena_number = field(body, "atena_number", ATENA_NUMBER, "a 宛名番号: 10 digits")
    office = field(body, "office", ITEM, "the requesting 事務")
    provider = field(body, "provider", re.compile(r"[0-9]{6}"), "the providing body's 地方公共団体コード")
    kind = field(body, "provider_kind", ITEM, "the kind of provider the permission table names")
    items = items_in(body)
    for name, known, value in (
        ("office", OFFICES, [office]),
        ("provider_kind", KINDS, [kind]),
        ("items", ITEMS, items),
    ):
        if not set(value) <= known:
            raise Answer(400, f"{name} must be among the permission table's: {', '.join(sorted(known))}", field=name)
    request_id = str(uuid.uuid4())
    record = {
        "at": now(),
        "request_id": request_id,
        "side": "requester",
        "atena_number": atena_number,
        "requester": code,
        "provider": provider,
        "office": office,
        "items": sorted(set(items)),
    }
    with tenant_db(code) as cur:
        cur.execute("SELECT fugo FROM chukan.linked WHERE atena_number = %s", (atena_number,))
        linked = cur.fetchone()
    if linked is None:
        with tenant_db(code) as cur:
            position = append_record(cur, {**record, "outcome": "refused", "reason": "the person has no 符号 yet"})
        raise Answer(409, "the person has no 符号 yet: link the 宛名番号 first", record=position)
    status, answer = call_broker(
        code,
        "/query",
        {
            "request_id": request_id,
            "fugo": linked["fugo"],
            "office": office,
            "provider": provider,
            "provider_kind": kind,
            "items": record["items"],
        },
    )
    provided = status == 200 and answer.get("provided") is True
    # 400 and 401 are the broker refusing this 中間サーバー's own request (a clock, a key): an error here.
    outcome = (
        "provided"
        if provided
        else "provider-unavailable"
        if status >= 500
        else "error"
        if status in (400, 401)
        else "refused"
    )
    with tenant_db(code) as cur:
        position = append_record(
            cur, {**record, "outcome": outcome, **({} if provided else {"reason": answer.get("error", str(status))})}
        )
    if not provided:
        raise Answer(
            503 if status >= 500 else 502 if outcome == "error" else 403,
            answer.get("error", "not provided"),
            record=position,
            request_id=request_id,
        )
    return jsonify({"provided": True, "items": answer.get("items", {}), "request_id": request_id, "record": position})


def signed_by_broker() -> tuple[str, dict]:
    """The tenant a broker's request is for (it signs with that tenant's key) and its JSON body;
    401 when the signature does not hold."""
    raw = request.get_data()
    try:
        code = verify(KEYS, request.headers, request.path, raw, NONCES)
    except Refused as refusal:
        log.warning("refused an unsigned or bad request on %s: %s", request.path, refusal)
        raise Answer(401, str(refusal)) from None
    return code, json_body(raw)


@app.post("/provide")
def provide():
    """A brokered query for the providing tenant, signed by the broker with that tenant's key."""
    code, body = signed_by_broker()
    request_id = field(body, "request_id", REQUEST_ID, "the requester's UUID")
    token = field(body, "fugo", FUGO, "the provider's 符号 of the person")
    office = field(body, "office", ITEM, "the requesting 事務")
    requester = field(body, "requester", re.compile(r"[0-9]{6}"), "the requesting body")
    kind = field(body, "provider_kind", ITEM, "the kind of provider the permission table names")
    items = items_in(body)
    record = {
        "at": now(),
        "request_id": request_id,
        "side": "provider",
        "requester": requester,
        "provider": code,
        "office": office,
        "items": sorted(set(items)),
    }
    with tenant_db(code) as cur:
        cur.execute("SELECT atena_number, residence FROM chukan.linked WHERE fugo = %s", (token,))
        person = cur.fetchone()
        found = {}
        # A former municipality provides of its former residents only, as its registry says.
        if person is not None and (kind != "former-municipality" or person["residence"] == "former"):
            cur.execute(
                "SELECT item, value FROM chukan.fuhon WHERE atena_number = %s AND item = ANY(%s)",
                (person["atena_number"], record["items"]),
            )
            found = {row["item"]: row["value"] for row in cur.fetchall()}
        if not found:
            not_former = person is not None and kind == "former-municipality" and person["residence"] != "former"
            reason = (
                "the person is not a former resident here" if not_former else "no 副本 of these items for this 符号"
            )
            position = append_record(cur, {**record, "outcome": "refused", "reason": reason})
        else:
            position = append_record(
                cur,
                {**record, "atena_number": person["atena_number"], "outcome": "provided", "provided": sorted(found)},
            )
    if not found:  # after the block: the refusal's record is committed, not rolled back with it
        raise Answer(404, "no 副本 of these items for this 符号", record=position)
    return jsonify({"items": found, "record": position})


PORTAL = "マイナポータル"  # the requester a 自己情報表示 is recorded under
SELF_DISCLOSURE = "自己情報表示"


@app.post("/api/cards")
def register_card():
    code = calling_tenant()
    body = json_body()
    atena_number = field(body, "atena_number", ATENA_NUMBER, "a 宛名番号: 10 digits")
    serial = field(body, "serial", CARD_SERIAL, "the card certificate's serial, lowercase hex")
    with tenant_db(code) as cur:
        cur.execute("SELECT fugo FROM chukan.linked WHERE atena_number = %s", (atena_number,))
        linked = cur.fetchone()
    if linked is None:
        raise Answer(409, "the person has no 符号 yet: the card is registered once the 宛名番号 is linked")
    status, answer = call_broker(code, "/cards", {"fugo": linked["fugo"], "serial": serial})
    if status != 201:
        answered = 503 if status >= 500 else 502 if status in (400, 401) else 409  # 400, 401: our own request
        raise Answer(answered, f"the broker did not register the card: {answer.get('error', status)}")
    return jsonify({"serial": serial, "registered": True}), 201


@app.post("/portal-held")
def portal_held():
    """What the tenant holds of the person the broker names, for the person themself."""
    code, body = signed_by_broker()
    request_id = field(body, "request_id", REQUEST_ID, "the portal request's UUID")
    token = field(body, "fugo", FUGO, "the tenant's 符号 of the person")
    with tenant_db(code) as cur:
        cur.execute("SELECT atena_number, residence FROM chukan.linked WHERE fugo = %s", (token,))
        person = cur.fetchone()
        held: dict = {}
        if person is not None:
            cur.execute(
                "SELECT item, value, registered_at FROM chukan.fuhon WHERE atena_number = %s ORDER BY item",
                (person["atena_number"],),
            )
            held = {r["item"]: {"value": r["value"], "registered_at": r["registered_at"].isoformat()} for r in cur}
        # Even a person with nothing here is recorded: the request was about them.
        position = append_record(
            cur,
            {
                "at": now(),
                "request_id": request_id,
                "side": "provider",
                "requester": PORTAL,
                "provider": code,
                "office": SELF_DISCLOSURE,
                "items": sorted(held),
                "outcome": "provided" if held else "refused",
                **({"atena_number": person["atena_number"]} if person is not None else {}),
            },
        )
    residence = person["residence"] if person is not None else None
    return jsonify({"items": held, "residence": residence, "record": position})


@app.get("/api/records")
def records():
    """The calling tenant's 情報提供等記録, newest first: ?request_id= narrows them down."""
    code = calling_tenant()
    request_id = request.args.get("request_id")
    if request_id is not None and not REQUEST_ID.fullmatch(request_id):
        raise Answer(400, "request_id is the UUID a query answered with")
    with tenant_db(code) as cur:
        cur.execute(
            "SELECT position, record, hash FROM chukan.records"
            " WHERE %(id)s IS NULL OR record::jsonb ->> 'request_id' = %(id)s ORDER BY position DESC LIMIT 100",
            {"id": request_id},
        )
        rows = cur.fetchall()
    return jsonify({"records": [{**r, "record": json.loads(r["record"])} for r in rows]})
