"""What every business system of a municipality shares on its app VM (住民記録, 税): the settings,
the JSON refusals and error handlers, a log that names routes only, the request's database
connection, the validation of request bodies, the clerks' sign-in (scrypt + TOTP, sessions bound
to an office, roles, lockout) and the アクセス記録.

Each system is its own gunicorn service and imports ``app`` from here, so one clerk's session is
good at every system of the municipality: the sessions are rows of the municipality's database.
The settings are ``JUMIN_CONFIG``'s (the DB password comes from libpq's ``PGPASSFILE``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2
import psycopg2.errors
import psycopg2.extras
import pyotp
from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

SETTINGS = json.loads(Path(os.environ.get("JUMIN_CONFIG", "/etc/jumin/jumin.json")).read_text(encoding="utf-8"))
MUNICIPALITY = SETTINGS["municipality"]
# Dates of the registry are Japanese dates, whatever the VM's clock zone.
JST = ZoneInfo("Asia/Tokyo")

log = logging.getLogger("gunicorn.error")  # one log stream with gunicorn's own messages

# ASCII digits only: \d would take ０-９ and ٠-٩, which int() reads but the database's CHECKs refuse.
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
RESIDENT_REF = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LINKAGE_HEALTH_TIMEOUT = 5.0  # seconds the health of 番号連携 may take (the probe's own timeout is longer)
# Characters no text field holds: controls (NUL included) and lone surrogates, which no UTF-8
# string can carry and the database cannot store.
FORBIDDEN = ("Cc", "Cs")

app = Flask(__name__)
app.json.ensure_ascii = False  # UTF-8 bodies: names travel as written, 𠮷 included
app.json.sort_keys = False
MAX_BODY = int(SETTINGS.get("max_body_bytes", 64 * 1024))
app.config["MAX_CONTENT_LENGTH"] = MAX_BODY  # a chunked body is cut off there too (413)
# What the failing system calls itself in a 500's body (the importing system sets it).
app.config["SYSTEM"] = "the system"

# --- Errors: every refusal is JSON naming the field at fault ---


class Refused(Exception):
    """A request the registry does not carry out; nothing has been written."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def reply(body: dict, status: int = 200):
    return jsonify({"municipality_code": MUNICIPALITY["code"], **body}), status


@app.errorhandler(Refused)
def refused(error: Refused):
    return reply({"error": error.message, "field": error.field}, error.status)


@app.errorhandler(HTTPException)
def http_error(error: HTTPException):
    if error.code == 413:
        return reply({"error": f"the body is over {MAX_BODY // 1024} KiB", "field": "body"}, 413)
    return reply({"error": error.description, "field": None}, error.code or 500)


@app.errorhandler(Exception)
def internal_error(error: Exception):
    # Neither the body nor the log carries the error's text: a database error's message and
    # detail may quote the row (name, address, 個人番号). Its class and SQLSTATE are enough to look.
    log.error("%s %s: %s (SQLSTATE %s)", request.method, route(), type(error).__name__, getattr(error, "pgcode", "-"))
    return reply({"error": f"{app.config['SYSTEM']} failed to answer; nothing was written", "field": None}, 500)


def route() -> str:
    """The request's route as declared (/api/residents/<ref>): what a log may name. The query may
    carry a name."""
    return request.url_rule.rule if request.url_rule else "(no route)"


@app.before_request
def started():
    request.environ["business.started"] = time.monotonic()


@app.after_request
def access_log(response):
    took = (time.monotonic() - request.environ.get("business.started", time.monotonic())) * 1000
    log.info('%s "%s %s" %s %.0fms', request.remote_addr, request.method, route(), response.status_code, took)
    return response


def shown(value: str) -> str:
    """A value from the request as an error message may echo it: lone surrogates escaped."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


@app.before_request
def limit_body():
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Refused(413, "body", f"the body is over {MAX_BODY // 1024} KiB")


@app.errorhandler(psycopg2.errors.ReadOnlySqlTransaction)
def read_only(error):
    return reply(
        {
            "error": "this site's database is a read-only replica: nothing is registered here, and nothing is "
            "shown that the アクセス記録 could not record; use the center",
            "field": None,
        },
        503,
    )


@app.errorhandler(psycopg2.OperationalError)
def database_unreachable(error):
    log.warning("database unreachable: %s", " ".join(str(error).split()))
    return reply({"error": "the database does not answer", "field": None}, 503)


@app.errorhandler(psycopg2.errors.UndefinedTable)
def not_initialised(error):
    return reply({"error": f"{app.config['SYSTEM']} has not been initialised at the center yet", "field": None}, 503)


def office() -> str:
    """The terminal the request came from. Only the gateway reaches the app, and it appends the
    address it saw to X-Forwarded-For: the last one is the gateway's word, earlier ones the client's."""
    seen = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
    return seen if re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", seen) else f"gateway {request.remote_addr}"


def queue_fuhon(cur, system: str, atena_number: str, item: str, value: dict) -> None:
    """A 副本 of `system` ('jumin', 'zei') for the 中間サーバー, sent by atena-link once this
    transaction is committed."""
    cur.execute(
        "INSERT INTO fuhon_outbox (atena_number, item, value, system) VALUES (%s, %s, %s, %s)",
        (atena_number, item, json.dumps(value, ensure_ascii=False), system),
    )


def record(cur, action: str, resident_code: str, fields, purpose: str | None = None) -> None:
    """An アクセス記録 row in the same transaction as the access: no record, nothing shown."""
    cur.execute(
        "INSERT INTO audit.access_records (office, clerk, action, resident_code, fields, purpose)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (office(), g.clerk.clerk_id, action, resident_code, list(fields), purpose),
    )


# --- Database ---

# What a system prepares on the request's fresh connection (its own tables, where writable).
PREPARE: list[Callable] = []


def connection():
    """The request's own database connection, opened at its first use (the session check)."""
    if "db" not in g:
        g.db = psycopg2.connect(SETTINGS["dsn"])
        for prepare in PREPARE:
            prepare(g.db)
    return g.db


@app.teardown_request
def disconnect(_error) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


@contextmanager
def transaction():
    """A cursor in one transaction on the request's connection: committed on success, rolled back on error."""
    conn = connection()
    with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        yield cur


def is_replica(conn) -> bool:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_is_in_recovery()")
        return cur.fetchone()[0]


def schema_step(lock_name: str, sql: str) -> None:
    """Prepare each request's connection with a system's own tables: `sql` runs once per process,
    only where the database is writable (not on a replica), under an advisory lock named
    `lock_name` because gunicorn's workers race for it at start. The lock is waited for 10 s at
    most: a synchronous primary whose replica is not streaming yet holds the first commit, and
    the requests of workers killed meanwhile would each leave a session waiting for ever."""
    ready = False

    def ensure(conn) -> None:
        nonlocal ready
        if ready or is_replica(conn):
            return
        with conn, conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '10s'")
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_name,))
            cur.execute(sql)
        ready = True

    PREPARE.append(ensure)


# --- Validation ---


def today() -> dt.date:
    return dt.datetime.now(JST).date()


def json_body() -> dict:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise Refused(400, "body", "the body must be a JSON object (Content-Type: application/json, UTF-8)")
    return body


def text(body: dict, field: str, limit: int, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise Refused(400, field, f"{field} is required (a non-empty string)")
    # Kept exactly as written, never NFC-normalised: that would fold some 外字 (CJK compatibility
    # ideographs) into other characters.
    value = value.strip()
    if len(value) > limit or any(unicodedata.category(c) in FORBIDDEN for c in value):
        raise Refused(400, field, f"{field} must be at most {limit} printable characters")
    return value


def date(body: dict, field: str, required: bool = True) -> dt.date | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        raise Refused(400, field, f"{field} must be a date written YYYY-MM-DD")
    try:
        parsed = dt.date.fromisoformat(value)
    except ValueError:
        raise Refused(400, field, f"{field} is not a date of the calendar: {value}") from None
    if parsed > today():
        raise Refused(400, field, f"{field} is in the future: {value}")
    return parsed


def refuse_unknown(body: dict, known: tuple[str, ...]) -> None:
    for field in body:
        if field not in known:
            raise Refused(400, shown(field), f"unknown field {shown(field)}; expected some of {', '.join(known)}")


def choice(body: dict, field: str, allowed) -> str:
    value = body.get(field)
    if not isinstance(value, str) or value not in allowed:  # a list or an object is not hashable
        raise Refused(400, field, f"{field} must be one of {', '.join(allowed)}")
    return value


# --- Clerks: sign-in with two factors, sessions, roles ---

SIGN_IN = {"failures": 5, "lockout_minutes": 15, "idle_minutes": 30, "session_hours": 8, **SETTINGS.get("sign_in", {})}
CLERK_ID = re.compile(r"[a-z0-9][a-z0-9-]{2,31}")
TOTP_CODE = re.compile(r"[0-9]{6}")
ROLES = ("窓口", "管理者")
# Checked when the 職員ID is unknown, so that an unknown ID costs what a wrong password costs.
_NOBODY = "scrypt$16384$8$1$" + base64.b64encode(b"\0" * 16).decode() + "$" + base64.b64encode(b"\0" * 32).decode()


@dataclass(frozen=True)
class Clerk:
    clerk_id: str
    role: str
    must_change: bool  # the initial password a 管理者 handed over is still the password


def hash_password(password: str) -> str:
    """scrypt$N$r$p$salt$key, as lgcloud.state.clerks writes it for the first accounts."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return "$".join(("scrypt", "16384", "8", "1", base64.b64encode(salt).decode(), base64.b64encode(key).decode()))


def password_matches(stored: str, password: str) -> bool:
    try:
        method, n, r, p, salt, key = stored.split("$")
        derived = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
        return method == "scrypt" and hmac.compare_digest(derived, base64.b64decode(key))
    except ValueError:  # binascii.Error is one too
        return False


def accepted_step(secret: str, code: str, last_step: int) -> int | None:
    """The TOTP step `code` belongs to (now, or one step either side for a clock that drifts), if
    that step is later than the last one used: a code works once."""
    totp = pyotp.TOTP(secret)
    now = int(time.time()) // totp.interval
    for step in (now - 1, now, now + 1):
        if step > last_step and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def signed_in(cur, role: str | None, changing_password: bool = False) -> Clerk:
    """The clerk whose session the request carries, if it is current, from this office, and of
    `role` (any role: None). Until the initial password is changed, the session does that only."""
    token = bearer()
    if token is None:
        raise Refused(401, "session", "sign in first (POST /api/session) and send Authorization: Bearer <token>")
    cur.execute(
        "SELECT s.clerk_id, c.role, c.must_change, s.office, s.seen_at < now() - interval '1 minute' AS stale"
        " FROM staff.sessions s JOIN staff.clerks c USING (clerk_id)"
        " WHERE s.token_hash = %s AND s.ended_at IS NULL AND s.expires_at > now()"
        " AND s.seen_at > now() - make_interval(mins => %s) AND c.disabled_at IS NULL",
        (token_hash(token), SIGN_IN["idle_minutes"]),
    )
    session = cur.fetchone()
    if session is None or not hmac.compare_digest(session["office"], office()):
        raise Refused(401, "session", "the session has ended, expired or belongs to another office: sign in again")
    if session["must_change"] and not changing_password:
        raise Refused(
            403, "password", 'change the initial password first: POST /api/session/password {"current", "new"}'
        )
    if role is not None and session["role"] != role:
        raise Refused(403, "role", f"this is a {role}'s work; {session['clerk_id']} signed in as {session['role']}")
    if session["stale"]:  # idle time counts from the last request; written at most once a minute
        cur.execute("UPDATE staff.sessions SET seen_at = now() WHERE token_hash = %s", (token_hash(token),))
    return Clerk(session["clerk_id"], session["role"], session["must_change"])


def needs(role: str):
    """Mark a route as `role`'s work: the request's session is checked before anything else."""

    def mark(view):
        view.needs_role = role
        return view

    return mark


@app.before_request
def check_session():
    view = app.view_functions.get(request.endpoint)
    role = getattr(view, "needs_role", None)
    if role is not None:
        with transaction() as cur:
            g.clerk = signed_in(cur, role)


def clerk_id_in(values, field: str) -> str:
    """The 職員ID a body or query gives in `field`, or Refused naming it."""
    clerk_id = values.get(field)
    if not isinstance(clerk_id, str) or not CLERK_ID.fullmatch(clerk_id):
        raise Refused(400, field, f"{field} is a 職員ID: 3 to 32 of a-z, 0-9 and -")
    return clerk_id


def sign_in_record(cur, clerk_id: str | None, outcome: str, by: str | None = None) -> None:
    cur.execute(
        "INSERT INTO audit.sign_ins (office, clerk_id, outcome, by_clerk) VALUES (%s, %s, %s, %s)",
        (office(), clerk_id, outcome, by),
    )


@app.post("/api/session")
def sign_in():
    body = json_body()
    refuse_unknown(body, ("clerk_id", "password", "code"))
    clerk_id = clerk_id_in(body, "clerk_id")
    password = body.get("password")
    if not isinstance(password, str) or not 0 < len(password) <= 200:
        raise Refused(400, "password", "password is required (a string of at most 200 characters)")
    code = body.get("code")
    if not isinstance(code, str) or not TOTP_CODE.fullmatch(code):
        raise Refused(400, "code", "code is the 6-digit one-time code of the clerk's authenticator")
    token = None
    with transaction() as cur:
        cur.execute(
            "SELECT role, password, must_change, totp_secret, last_step, failures, locked_until > now() AS locked,"
            " disabled_at IS NOT NULL AS disabled FROM staff.clerks WHERE clerk_id = %s FOR UPDATE",
            (clerk_id,),
        )
        clerk = cur.fetchone()
        if clerk is None:
            password_matches(_NOBODY, password)
            outcome = "unknown-clerk"
        elif clerk["disabled"]:
            outcome = "disabled"
        elif clerk["locked"]:
            outcome = "locked"
        else:
            step = accepted_step(clerk["totp_secret"], code, clerk["last_step"])
            if not password_matches(clerk["password"], password):
                outcome = "wrong-password"
            elif step is None:
                outcome = "wrong-code"
            else:
                outcome = "signed-in"
            if outcome == "signed-in":
                token = secrets.token_urlsafe(32)
                cur.execute(
                    "UPDATE staff.clerks SET failures = 0, last_step = %s WHERE clerk_id = %s", (step, clerk_id)
                )
                cur.execute(
                    "INSERT INTO staff.sessions (token_hash, clerk_id, office, expires_at)"
                    " VALUES (%s, %s, %s, now() + make_interval(hours => %s)) RETURNING expires_at",
                    (token_hash(token), clerk_id, office(), SIGN_IN["session_hours"]),
                )
                expires_at = cur.fetchone()["expires_at"]
            elif clerk["failures"] + 1 >= SIGN_IN["failures"]:
                cur.execute(
                    "UPDATE staff.clerks SET failures = 0, locked_until = now() + make_interval(mins => %s)"
                    " WHERE clerk_id = %s",
                    (SIGN_IN["lockout_minutes"], clerk_id),
                )
                outcome += ", locked-out"
            else:
                cur.execute("UPDATE staff.clerks SET failures = failures + 1 WHERE clerk_id = %s", (clerk_id,))
        sign_in_record(cur, clerk_id, outcome)
    log.info("sign-in: %s", outcome)
    if token is None:
        if outcome in ("locked", "wrong-password, locked-out", "wrong-code, locked-out"):
            raise Refused(
                423,
                "clerk_id",
                f"the account is locked for {SIGN_IN['lockout_minutes']} minutes after {SIGN_IN['failures']} "
                "wrong sign-ins; a 管理者 can unlock it",
            )
        # One answer for every other refusal: which factor was wrong is for the アクセス記録 only.
        raise Refused(401, None, "the 職員ID, password or one-time code is wrong, or the account is disabled")
    session = {
        "token": token,
        "clerk_id": clerk_id,
        "role": clerk["role"],
        "expires_at": expires_at.isoformat(),
        "must_change_password": clerk["must_change"],
    }
    return reply({"session": session}, 201)


@app.get("/api/session")
def session_shown():
    with transaction() as cur:
        clerk = signed_in(cur, None, changing_password=True)
    return reply(
        {"session": {"clerk_id": clerk.clerk_id, "role": clerk.role, "must_change_password": clerk.must_change}}
    )


PASSWORD_MIN = 12


@app.post("/api/session/password")
def change_password():
    """The signed-in clerk's own password: the current one, and a new one of 12 characters or more."""
    body = json_body()
    refuse_unknown(body, ("current", "new"))
    current, new = body.get("current"), body.get("new")
    if not isinstance(current, str) or not 0 < len(current) <= 200:
        raise Refused(400, "current", "current is the password the clerk signed in with")
    if (
        not isinstance(new, str)
        or not PASSWORD_MIN <= len(new) <= 200
        or any(unicodedata.category(c) in FORBIDDEN for c in new)
    ):
        raise Refused(400, "new", f"new is a password of {PASSWORD_MIN} to 200 printable characters")
    with transaction() as cur:
        clerk = signed_in(cur, None, changing_password=True)
        cur.execute("SELECT password FROM staff.clerks WHERE clerk_id = %s FOR UPDATE", (clerk.clerk_id,))
        if not password_matches(cur.fetchone()["password"], current):
            raise Refused(403, "current", "the current password is wrong; nothing was changed")
        if new == current or clerk.clerk_id in new:
            raise Refused(400, "new", "the new password must differ from the current one and hold no 職員ID")
        cur.execute(
            "UPDATE staff.clerks SET password = %s, must_change = false WHERE clerk_id = %s",
            (hash_password(new), clerk.clerk_id),
        )
        # Every other session of the clerk ends: one begun with the old (or the handed-over)
        # password must not become a full session now.
        cur.execute(
            "UPDATE staff.sessions SET ended_at = now() WHERE clerk_id = %s AND token_hash <> %s AND ended_at IS NULL",
            (clerk.clerk_id, token_hash(bearer() or "")),
        )
        sign_in_record(cur, clerk.clerk_id, "password-changed")
    return reply({"session": {"clerk_id": clerk.clerk_id, "role": clerk.role, "must_change_password": False}})


@app.delete("/api/session")
def sign_out():
    token = bearer()
    with transaction() as cur:
        cur.execute(
            "UPDATE staff.sessions SET ended_at = now() WHERE token_hash = %s AND ended_at IS NULL"
            " AND office = %s RETURNING clerk_id",
            (token_hash(token or ""), office()),
        )
        ended = cur.fetchone()
        if ended is None:
            raise Refused(401, "session", "no session to end")
        sign_in_record(cur, ended["clerk_id"], "signed-out")
    return reply({"session": None})


def isoformat(row: dict) -> dict:
    return {
        key: value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value for key, value in row.items()
    }


def limit() -> int:
    value = request.args.get("limit", "100")
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 0 < int(value) <= 1000:
        raise Refused(400, "limit", "limit is a number of rows from 1 to 1000")
    return int(value)


# The health check's own connection, kept from one check to the next: each gateway asks every 2 s
# for each system, and a new session per check (a backend forked, a SCRAM exchange) was most of an
# idle lab's CPU at 30 municipalities. A peer that is gone fails it within tcp_user_timeout; a
# broken one is dropped and the check connects once more, so the answer is always the database's
# as it is now (after a promotion, a moved service address: the new holder's).
HEALTH_TCP_TIMEOUT_MS = 2000
_health_db = None


def health_connection():
    global _health_db
    if _health_db is None or _health_db.closed:
        _health_db = psycopg2.connect(
            SETTINGS["dsn"] + f" keepalives=1 keepalives_idle=5 tcp_user_timeout={HEALTH_TCP_TIMEOUT_MS}"
        )
        for prepare in PREPARE:  # a system's tables are made at its first health check, as before
            prepare(_health_db)
        _health_db.autocommit = True
    return _health_db


def database_is_replica() -> bool:
    global _health_db
    for last in (False, True):
        conn = health_connection()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                return cur.fetchone()[0]
        except psycopg2.Error:
            conn.close()
            _health_db = None
            if last:
                raise
    raise AssertionError("unreachable")


@app.get("/healthz")
def healthz():
    replica = database_is_replica()
    return reply({"status": "ok", "database": "read-only replica" if replica else "primary"})


# --- 番号連携: the 中間サーバー of this site, as the municipality's systems call it ---


def ask_chukan(path: str, payload: dict | None, timeout: float) -> tuple[int, dict]:
    """The 中間サーバー's (HTTP status, JSON answer) for a GET of `path`, or a POST of `payload`;
    (0, {}) when it does not answer. An answer that is not JSON reads as {}."""
    body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
    method = "GET" if body is None else "POST"
    headers = {"Content-Type": "application/json"}
    call = urllib.request.Request(f"{SETTINGS['chukan']}{path}", body, headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError as error:
        log.warning("the 中間サーバー does not answer: %s", type(error).__name__)
        return 0, {}
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        answer = {}
    return status, answer if isinstance(answer, dict) else {}


# --- 番号連携's health, as the municipality's systems see it (the offices' probes ask it) ---


@app.get("/linkage/healthz")
def linkage_healthz():
    """Whether the 中間サーバー of this site answers for the municipality, reaching its tenant's
    database and the broker; about nobody, and writing no record."""
    status, answer = ask_chukan("/api/health", None, LINKAGE_HEALTH_TIMEOUT)
    if status == 0:
        return reply({"status": "down", "linkage": "the 中間サーバー does not answer"}, 503)
    if status != 200:
        return reply({"status": "down", "linkage": answer.get("error", str(status))}, 503)
    return reply({"status": "ok", "linkage": "the 中間サーバー, the tenant's database and the broker answer"})
