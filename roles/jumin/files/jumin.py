"""住民記録 (resident registry) of one municipality: a JSON API over its PostgreSQL database.

Runs under gunicorn on the municipality's app VM and reads its settings from the JSON file named
by ``JUMIN_CONFIG`` (the DB password comes from libpq's ``PGPASSFILE``)::

    {"dsn": "host=10.100.20.3 dbname=jumin user=jumin connect_timeout=3",
     "municipality": {"id": "a-city", "code": "012025", "name": "Ａ市"}}

    $ curl -s https://jumin.a-city.lgwan.test/api/session \\
        -d '{"clerk_id": "kunren01", "password": "…", "code": "492039"}'
    {"municipality_code": "012025", "session": {"token": "Jx…", "clerk_id": "kunren01", "role": "窓口", ...}}
    $ curl -s -H 'Authorization: Bearer Jx…' https://jumin.a-city.lgwan.test/api/residents \\
        -d '{"name": "髙橋 一郎", "kana": "タカハシ イチロウ", "birth_date": "2026-11-01", "sex": "男",
             "address": "Ａ市本町1-1", "event": "birth"}'
    {"municipality_code": "012025", "resident": {"ref": "0b6f4c3e-…", "resident_code": "48213907715",
     "my_number": "621498320257", ...}}

Every route but /healthz and the sign-in needs a clerk's session: a 窓口 clerk registers and looks
up residents, a 管理者 keeps the accounts and reads the アクセス記録 (two factors: password and a
TOTP code; five wrong sign-ins in a row lock the account for a while).

A URL names a resident by an opaque reference (``ref``), never by the 住民票コード or the 個人番号,
which are data. Logs name neither, nor any other personal data: requests are logged by their route. The
standby app at the backup site reads the replica: writes answer 503 until the replica is promoted,
and the tables are created only where the database is writable.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import unicodedata

import psycopg2
import psycopg2.errors
import pyotp
from business_app import (
    CLERK_ID,
    FORBIDDEN,
    MUNICIPALITY,
    RESIDENT_REF,
    ROLES,
    Refused,
    app,
    ask_chukan,
    choice,
    clerk_id_in,
    date,
    hash_password,
    isoformat,
    json_body,
    limit,
    log,
    needs,
    queue_fuhon,
    record,
    refuse_unknown,
    reply,
    schema_step,
    sign_in_record,
    text,
    today,
    transaction,
)
from flask import g, render_template_string, request

__all__ = ["app", "my_number_check_digit", "my_number_is_valid"]

app.config["SYSTEM"] = "the registry"

SCHEMA = """
CREATE TABLE IF NOT EXISTS residents (
    -- The row's own key: a person who moves out and back in keeps the 住民票コード and has two rows.
    ref                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    resident_code      char(11) NOT NULL CHECK (resident_code ~ '^[0-9]{11}$'),
    my_number          char(12) NOT NULL CHECK (my_number ~ '^[0-9]{12}$'),
    name               text NOT NULL,
    kana               text NOT NULL,
    birth_date         date NOT NULL,
    sex                text NOT NULL CHECK (sex IN ('男', '女')),
    address            text NOT NULL,
    event              text NOT NULL CHECK (event IN ('birth', 'move-in')),
    event_date         date NOT NULL,
    previous_address   text,
    moved_out_on       date,
    moved_out_to       text,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);
-- What a URL names a resident by: a reference that means nothing outside this registry (a URL
-- reaches logs, histories and bookmarks; the 住民票コード must not).
ALTER TABLE residents ADD COLUMN IF NOT EXISTS ref uuid NOT NULL DEFAULT gen_random_uuid();
-- A registry made when the 住民票コード was the key gets the ref as its key, in place: the same
-- rows, the 住民票コード then unique among current residents only (below).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'residents'::regclass AND i.indisprimary AND a.attname = 'ref'
    ) THEN
        CREATE UNIQUE INDEX IF NOT EXISTS residents_ref ON residents (ref);
        ALTER TABLE residents DROP CONSTRAINT IF EXISTS residents_pkey;
        ALTER TABLE residents ADD CONSTRAINT residents_pkey PRIMARY KEY USING INDEX residents_ref;
    END IF;
END $$;
-- One current resident per 住民票コード and per 個人番号; someone who moved out may move back in.
CREATE UNIQUE INDEX IF NOT EXISTS residents_current_resident_code ON residents (resident_code)
    WHERE moved_out_on IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS residents_current_my_number ON residents (my_number)
    WHERE moved_out_on IS NULL;
CREATE INDEX IF NOT EXISTS residents_name ON residents (name);
-- A drawn code is checked against every resident, moved out or not: without these the check
-- reads the whole table on every registration (a million residents: seconds each).
CREATE INDEX IF NOT EXISTS residents_resident_code ON residents (resident_code);
CREATE INDEX IF NOT EXISTS residents_my_number ON residents (my_number);
-- 団体内統合宛名: one 宛名番号 per person across the municipality's business systems (住民記録,
-- 税, …), which they key their own data and the 中間サーバー's 副本 by; kept through a move away and
-- back. A registry made before it gets every person it ever held, once.
DO $$
BEGIN
    IF to_regclass('atena') IS NULL THEN
        CREATE SEQUENCE atena_numbers;
        CREATE TABLE atena (
            atena_number  char(10) PRIMARY KEY DEFAULT lpad(nextval('atena_numbers')::text, 10, '0'),
            resident_code char(11) NOT NULL UNIQUE,
            created_at    timestamptz NOT NULL DEFAULT now()
        );
        ALTER SEQUENCE atena_numbers OWNED BY atena.atena_number;
        INSERT INTO atena (resident_code)
            SELECT resident_code FROM residents GROUP BY resident_code ORDER BY min(recorded_at);
    END IF;
END $$;
-- When the 中間サーバー last linked the 宛名番号 to the municipality's 符号 and learnt whether the
-- person lives here now (the atena-link service); NULL: it has to be told (again).
ALTER TABLE atena ADD COLUMN IF NOT EXISTS linked_at timestamptz;
CREATE INDEX IF NOT EXISTS atena_unlinked ON atena (atena_number) WHERE linked_at IS NULL;
-- 副本 the municipality's systems register with the 中間サーバー (税's 所得 and 課税情報, 住民記録's
-- 住民票関係情報 after a change of name): queued in
-- the transaction that made them, sent in order by atena-link, and kept with the answer it got.
CREATE TABLE IF NOT EXISTS fuhon_outbox (
    id           bigserial PRIMARY KEY,
    atena_number char(10) NOT NULL CHECK (atena_number ~ '^[0-9]{10}$'),
    item         text NOT NULL,
    value        jsonb NOT NULL,
    system       text NOT NULL,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    answered_at  timestamptz,
    answer       smallint        -- the 中間サーバー's HTTP status: 201 registered, a 4xx refused
);
CREATE INDEX IF NOT EXISTS fuhon_outbox_waiting ON fuhon_outbox (id) WHERE answered_at IS NULL;
-- When a fact a 個人番号カード carries (氏名, 住所) last changed: J-LIS revokes the cards issued
-- before it. A name change keeps the name before it (a correction of the 住民票 loses nothing).
-- Added once: even ALTER … IF NOT EXISTS takes the table's lock, at every worker's start.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'residents' AND column_name = 'facts_changed_at'
    ) THEN
        ALTER TABLE residents ADD COLUMN facts_changed_at timestamptz;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS name_changes (
    id            bigserial PRIMARY KEY,
    ref           uuid NOT NULL,  -- no foreign key: the drills' DELETE FROM residents must go through, as a mistake would
    name_before   text NOT NULL,
    kana_before   text NOT NULL,
    event_date    date NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
"""
COLUMNS = (
    "ref",
    "resident_code",
    "my_number",
    "name",
    "kana",
    "birth_date",
    "sex",
    "address",
    "event",
    "event_date",
    "previous_address",
    "moved_out_on",
    "moved_out_to",
)
# What a name lookup shows: enough to pick a person, without the 個人番号.
SUMMARY = ("ref", "resident_code", "name", "kana", "birth_date", "sex", "address", "status")
EVENTS = {"birth": "出生", "move-in": "転入"}
SEXES = ("男", "女")
KANA = re.compile(r"[\u30a1-\u30fc\u3000 ]+")  # katakana, ・, ー and spaces
RESIDENT_CODE = re.compile(r"[0-9]{11}")
MY_NUMBER = re.compile(r"[0-9]{12}")
# A name lookup: at least this many characters, and at most this many residents shown.
LOOKUP_MIN_CHARS = 2
LOOKUP_LIMIT = 20


# --- 個人番号 check digit (the same formula as lgcloud.codes; the VM has no lgcloud package) ---


def my_number_check_digit(first_eleven: str) -> int:
    """Check digit of a 個人番号: Pₙ the n-th digit from the right, Qₙ = n+1 (n ≤ 6) or n−5.

    >>> my_number_check_digit("62149832025")
    7
    """
    total = sum(int(p) * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(reversed(first_eleven), start=1))
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def my_number_is_valid(number: str) -> bool:
    """True when `number` is twelve digits whose last one is the right check digit."""
    return bool(MY_NUMBER.fullmatch(number)) and my_number_check_digit(number[:11]) == int(number[11])


def new_my_number() -> str:
    first_eleven = f"{secrets.randbelow(10**11):011d}"
    return f"{first_eleven}{my_number_check_digit(first_eleven)}"


def new_resident_code() -> str:
    return f"{secrets.randbelow(10**11):011d}"


# --- 個人番号 only for a purpose; every look at a resident recorded ---

# The 事務 a 個人番号 may be shown for (番号法 別表, in outline); a request names one: ?purpose=kokuho.
PURPOSES = {
    "juminhyo": "住民基本台帳に関する事務",
    "zei": "地方税の賦課徴収に関する事務",
    "kokuho": "国民健康保険に関する事務",
    "kaigo": "介護保険に関する事務",
    "jido-teate": "児童手当に関する事務",
}


def purpose() -> str | None:
    """The 事務 the request names, or None; an unknown one is refused."""
    named = request.args.get("purpose")
    if named is None:
        return None
    if named not in PURPOSES:
        raise Refused(400, "purpose", f"purpose names the 事務 the 個人番号 is for, one of {', '.join(PURPOSES)}")
    return named


def shown_fields(resident: dict, why: str | None) -> dict:
    """The resident as a request may see it: the 個人番号 only for a named purpose."""
    return resident if why else {key: value for key, value in resident.items() if key != "my_number"}


# --- Database ---

schema_step("jumin schema", SCHEMA)


def find(cur, ref: str, lock: bool = False) -> dict:
    """The resident a URL names by its reference (``ref``, from a registration or a lookup)."""
    if not RESIDENT_REF.fullmatch(ref):
        raise Refused(404, "ref", "a resident is named by the ref a registration or lookup gave")
    cur.execute(
        f"SELECT {', '.join(COLUMNS)}, atena_number FROM residents LEFT JOIN atena USING (resident_code)"
        " WHERE ref = %s" + (" FOR UPDATE OF residents" if lock else ""),
        (ref,),
    )
    row = cur.fetchone()
    if row is None:
        raise Refused(404, "ref", f"no resident {ref}")
    return as_json(row)


def as_json(row: dict) -> dict:
    resident = {key: value.isoformat() if isinstance(value, dt.date) else value for key, value in row.items()}
    resident["status"] = "moved-out" if row["moved_out_on"] else "resident"
    return resident


REGISTRATION = (
    "name",
    "kana",
    "birth_date",
    "sex",
    "address",
    "event",
    "event_date",
    "resident_code",
    "my_number",
    "previous_address",
)


def katakana(body: dict, field: str) -> str:
    value = text(body, field, 100)
    if not KANA.fullmatch(value):
        raise Refused(400, field, f"{field} must be written in katakana")
    return value


def not_before_registration(event_date: dt.date, resident: dict) -> None:
    """Refuse a change to a resident dated before the resident was registered."""
    if event_date < dt.date.fromisoformat(resident["event_date"]):
        raise Refused(400, "event_date", "event_date is before the resident's registration")


def registration(body: dict) -> dict:
    """The columns of a new resident from a 出生届 or 転入届, or Refused naming the first bad field."""
    refuse_unknown(body, REGISTRATION)
    name = text(body, "name", 100)
    kana = katakana(body, "kana")
    birth_date = date(body, "birth_date")
    sex = choice(body, "sex", SEXES)
    address = text(body, "address", 200)
    event = choice(body, "event", EVENTS)
    event_date = date(body, "event_date", required=event == "move-in") or birth_date
    if event == "birth" and event_date != birth_date:
        raise Refused(400, "event_date", "a birth makes a resident on the birth date")
    if event_date < birth_date:
        raise Refused(400, "event_date", "event_date is before birth_date")
    # A person keeps the 住民票コード for life: a move-in carries it from the 転出証明書 (a move from
    # abroad, without one, gets a new one, as a birth does).
    resident_code = body.get("resident_code")
    if resident_code is not None:
        if event != "move-in":
            raise Refused(400, "resident_code", "a 住民票コード comes only with a move-in; a birth gets a new one")
        if not isinstance(resident_code, str) or not RESIDENT_CODE.fullmatch(resident_code):
            raise Refused(400, "resident_code", "resident_code is not a 住民票コード: 11 digits")
    my_number = body.get("my_number")
    if my_number is not None:
        if event != "move-in":
            raise Refused(400, "my_number", "a 個人番号 is supplied only with a move-in; a birth gets a new one")
        if not isinstance(my_number, str) or not my_number_is_valid(my_number):
            raise Refused(400, "my_number", "my_number is not a 個人番号: 12 digits with a valid check digit")
    previous_address = text(body, "previous_address", 200, required=False)
    if previous_address and event != "move-in":
        raise Refused(400, "previous_address", "only a move-in has a previous address")
    return {
        "name": name,
        "kana": kana,
        "birth_date": birth_date,
        "sex": sex,
        "address": address,
        "event": event,
        "event_date": event_date,
        "resident_code": resident_code,
        "my_number": my_number,
        "previous_address": previous_address,
    }


# --- 管理者: accounts and the アクセス記録 ---

CLERK_FIELDS = ("clerk_id", "name", "role", "locked_until", "disabled_at", "created_at", "created_by")


@app.get("/api/clerks")
@needs("管理者")
def clerks():
    with transaction() as cur:
        cur.execute(f"SELECT {', '.join(CLERK_FIELDS)} FROM staff.clerks ORDER BY clerk_id")
        return reply({"clerks": [isoformat(row) for row in cur.fetchall()]})


@app.post("/api/clerks")
@needs("管理者")
def add_clerk():
    body = json_body()
    refuse_unknown(body, ("clerk_id", "name", "role"))
    clerk_id = clerk_id_in(body, "clerk_id")
    name = text(body, "name", 100)
    role = choice(body, "role", ROLES)
    password, secret = secrets.token_urlsafe(18), pyotp.random_base32()
    with transaction() as cur:
        cur.execute(
            "INSERT INTO staff.clerks (clerk_id, name, role, password, totp_secret, created_by, must_change)"
            " VALUES (%s, %s, %s, %s, %s, %s, true) ON CONFLICT (clerk_id) DO NOTHING",
            (clerk_id, name, role, hash_password(password), secret, g.clerk.clerk_id),
        )
        if not cur.rowcount:
            raise Refused(409, "clerk_id", f"a clerk {clerk_id} exists already")
        sign_in_record(cur, clerk_id, "created", g.clerk.clerk_id)
    # Shown once, to the 管理者 who hands them over: the database keeps neither in the clear but the secret.
    uri = pyotp.TOTP(secret).provisioning_uri(name=clerk_id, issuer_name=f"jumin {MUNICIPALITY['id']}")
    return reply(
        {"clerk": {"clerk_id": clerk_id, "role": role, "password": password, "totp_secret": secret, "totp_uri": uri}},
        201,
    )


def change_clerk(clerk_id: str, change: str, outcome: str) -> dict:
    if not CLERK_ID.fullmatch(clerk_id):
        raise Refused(404, "clerk_id", "a 職員ID is 3 to 32 of a-z, 0-9 and -")
    with transaction() as cur:
        cur.execute(
            f"UPDATE staff.clerks SET {change} WHERE clerk_id = %s RETURNING {', '.join(CLERK_FIELDS)}", (clerk_id,)
        )
        row = cur.fetchone()
        if row is None:
            raise Refused(404, "clerk_id", f"no clerk {clerk_id}")
        if outcome == "disabled":
            cur.execute(
                "UPDATE staff.sessions SET ended_at = now() WHERE clerk_id = %s AND ended_at IS NULL", (clerk_id,)
            )
        sign_in_record(cur, clerk_id, outcome, g.clerk.clerk_id)
    return reply({"clerk": isoformat(row)})


@app.post("/api/clerks/<clerk_id>/unlock")
@needs("管理者")
def unlock(clerk_id: str):
    return change_clerk(clerk_id, "failures = 0, locked_until = NULL", "unlocked")


@app.post("/api/clerks/<clerk_id>/disable")
@needs("管理者")
def disable(clerk_id: str):
    if clerk_id == g.clerk.clerk_id:
        raise Refused(409, "clerk_id", "a 管理者 does not disable their own account")
    return change_clerk(clerk_id, "disabled_at = coalesce(disabled_at, now())", "disabled")


@app.get("/api/access-records")
@needs("管理者")
def access_records():
    """The アクセス記録, newest first: ?resident=<ref> and ?clerk=<職員ID> narrow it down."""
    ref, clerk_id = request.args.get("resident"), request.args.get("clerk")
    if ref is not None and not RESIDENT_REF.fullmatch(ref):
        raise Refused(400, "resident", "resident is the ref a registration or lookup gave")
    if clerk_id is not None:
        clerk_id_in(request.args, "clerk")
    with transaction() as cur:
        cur.execute(
            "SELECT id, at, office, clerk, action, resident_code, fields, purpose FROM audit.access_records"
            " WHERE (%(ref)s IS NULL OR resident_code = (SELECT resident_code FROM residents WHERE ref = %(ref)s))"
            " AND (%(clerk)s IS NULL OR clerk = %(clerk)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"ref": ref, "clerk": clerk_id, "limit": limit()},
        )
        return reply({"access_records": [isoformat(row) for row in cur.fetchall()]})


@app.get("/api/sign-ins")
@needs("管理者")
def sign_ins():
    """Every sign-in attempt, newest first: ?clerk= narrows it down."""
    clerk_id = request.args.get("clerk")
    if clerk_id is not None:
        clerk_id_in(request.args, "clerk")
    with transaction() as cur:
        cur.execute(
            "SELECT id, at, office, clerk_id, outcome, by_clerk FROM audit.sign_ins"
            " WHERE %(clerk)s IS NULL OR clerk_id = %(clerk)s ORDER BY id DESC LIMIT %(limit)s",
            {"clerk": clerk_id, "limit": limit()},
        )
        return reply({"sign_ins": [isoformat(row) for row in cur.fetchall()]})


# --- API ---


@app.post("/api/residents")
@needs("窓口")
def register():
    resident = registration(json_body())
    carried, supplied = resident["resident_code"] is not None, resident["my_number"] is not None
    for _ in range(5):  # random codes: on the rare collision, draw again
        if not carried:
            resident["resident_code"] = new_resident_code()
        if not supplied:
            resident["my_number"] = new_my_number()
        try:
            with transaction() as cur:
                # A drawn code must be new to the registry, moved-out residents included.
                cur.execute(
                    "SELECT 1 FROM residents WHERE (%(drawn_code)s AND resident_code = %(resident_code)s)"
                    " OR (%(drawn_number)s AND my_number = %(my_number)s)",
                    {**resident, "drawn_code": not carried, "drawn_number": not supplied},
                )
                if cur.fetchone():
                    continue
                cur.execute(
                    f"INSERT INTO residents ({', '.join(resident)})"
                    f" VALUES ({', '.join(f'%({k})s' for k in resident)}) RETURNING {', '.join(COLUMNS)}",
                    resident,
                )
                created = as_json(cur.fetchone())
                cur.execute(
                    # A person coming back is a resident again: the 中間サーバー is told (atena-link).
                    "INSERT INTO atena (resident_code) VALUES (%s)"
                    " ON CONFLICT (resident_code) DO UPDATE SET linked_at = NULL;"
                    " SELECT atena_number FROM atena WHERE resident_code = %s",
                    (created["resident_code"], created["resident_code"]),
                )
                created["atena_number"] = cur.fetchone()["atena_number"]
                # The clerk who registers is given the new 個人番号 (for the 通知カード): 住民票の事務.
                record(cur, "register", created["resident_code"], created, "juminhyo")
        except psycopg2.errors.UniqueViolation as error:
            if supplied and error.diag.constraint_name == "residents_current_my_number":
                raise Refused(409, "my_number", "a current resident already holds this 個人番号") from None
            if carried and error.diag.constraint_name == "residents_current_resident_code":
                raise Refused(409, "resident_code", "a current resident already holds this 住民票コード") from None
            continue
        log.info("registered a resident (%s)", resident["event"])
        return reply({"resident": created}, 201)
    raise Refused(503, None, "could not draw a free 住民票コード; try again")


@app.get("/api/residents")
@needs("窓口")
def lookup():
    name = request.args.get("name", "").strip()
    if len(name) < LOOKUP_MIN_CHARS or len(name) > 100 or any(unicodedata.category(c) in FORBIDDEN for c in name):
        raise Refused(400, "name", f"give {LOOKUP_MIN_CHARS} to 100 printable characters of a name to look up: ?name=…")
    with transaction() as cur:
        cur.execute(
            f"SELECT {', '.join(COLUMNS)} FROM residents WHERE strpos(name, %s) > 0"
            " ORDER BY kana, resident_code, event_date LIMIT %s",
            (name, LOOKUP_LIMIT + 1),
        )
        found = [as_json(row) for row in cur.fetchall()]
        for resident in found[:LOOKUP_LIMIT]:
            record(cur, "lookup", resident["resident_code"], SUMMARY)
    # More than the limit: shown the first ones, told to narrow the name down.
    return reply(
        {
            "residents": [{key: r[key] for key in SUMMARY} for r in found[:LOOKUP_LIMIT]],
            "more": len(found) > LOOKUP_LIMIT,
        }
    )


@app.get("/api/residents/<ref>")
@needs("窓口")
def read(ref: str):
    why = purpose()
    with transaction() as cur:
        resident = shown_fields(find(cur, ref), why)
        record(cur, "read", resident["resident_code"], resident, why)
    return reply({"resident": resident})


@app.post("/api/residents/<ref>/move-out")
@needs("窓口")
def move_out(ref: str):
    body = json_body()
    refuse_unknown(body, ("event_date", "destination"))
    with transaction() as cur:
        resident = find(cur, ref, lock=True)
        if resident["status"] == "moved-out":
            raise Refused(409, "status", f"the resident moved out on {resident['moved_out_on']} already")
        event_date = date(body, "event_date")
        destination = text(body, "destination", 200)
        not_before_registration(event_date, resident)
        cur.execute(
            "UPDATE residents SET moved_out_on = %s, moved_out_to = %s, facts_changed_at = now()"
            f" WHERE ref = %s RETURNING {', '.join(COLUMNS)}",
            (event_date, destination, resident["ref"]),
        )
        resident = shown_fields(as_json(cur.fetchone()), None)
        record(cur, "move-out", resident["resident_code"], resident)
        # Now a former resident: the 中間サーバー is told (atena-link), so that it provides to the
        # person's next municipality what a former one may.
        cur.execute("UPDATE atena SET linked_at = NULL WHERE resident_code = %s", (resident["resident_code"],))
    log.info("moved out a resident")
    return reply({"resident": resident})


@app.post("/api/residents/<ref>/name-change")
@needs("窓口")
def change_name(ref: str):
    """A change of name (婚姻, 離婚, 養子縁組 …) written into a current resident's 住民票: the name
    before is kept, the card's facts changed (its certificate is revoked), and the 中間サーバー's
    住民票関係情報 副本 of the person is registered anew (atena-link)."""
    body = json_body()
    refuse_unknown(body, ("name", "kana", "event_date"))
    name = text(body, "name", 100)
    kana = katakana(body, "kana")
    event_date = date(body, "event_date")
    with transaction() as cur:
        resident = find(cur, ref, lock=True)
        if resident["status"] == "moved-out":
            raise Refused(409, "status", "the resident moved out: the municipality they live in now writes the change")
        not_before_registration(event_date, resident)
        if (name, kana) == (resident["name"], resident["kana"]):
            raise Refused(409, "name", "the resident's name is this already")
        cur.execute(
            "INSERT INTO name_changes (ref, name_before, kana_before, event_date) VALUES (%s, %s, %s, %s)",
            (resident["ref"], resident["name"], resident["kana"], event_date),
        )
        cur.execute(
            "UPDATE residents SET name = %s, kana = %s, facts_changed_at = now()"
            f" WHERE ref = %s RETURNING {', '.join(COLUMNS)}",
            (name, kana, resident["ref"]),
        )
        changed = shown_fields(as_json(cur.fetchone()), None)
        record(cur, "name-change", changed["resident_code"], changed)
        if resident["atena_number"] is not None:
            queue_fuhon(
                cur, "jumin", resident["atena_number"], "住民票関係情報", {"氏名": name, "氏名（フリガナ）": kana}
            )
    log.info("changed a resident's name")
    return reply({"resident": changed})


CARD_SERIAL = re.compile(r"[0-9a-f]{1,40}")  # a 利用者証明用電子証明書's serial, hex
FACTS_NOT_SENT = "the person's 住民票関係情報 has not reached the 中間サーバー yet"
CARD_TIMEOUT = 15.0  # seconds for the 中間サーバー and the broker to register a card


@app.post("/api/residents/<ref>/card")
@needs("窓口")
def register_card(ref: str):
    """A 個人番号カード issued to a current resident: its certificate's serial registered at the
    broker through the 中間サーバー, under the person's 符号 (マイ・ポータル signs in with it)."""
    body = json_body()
    refuse_unknown(body, ("serial",))
    serial = body.get("serial")
    if not isinstance(serial, str) or not CARD_SERIAL.fullmatch(serial):
        raise Refused(400, "serial", "serial is the card certificate's serial number, in lowercase hex")
    with transaction() as cur:
        resident = find(cur, ref)
        if resident["status"] == "moved-out":
            raise Refused(409, "status", "a card is issued to a current resident; this one moved out")
        if resident["atena_number"] is None:
            raise Refused(409, "atena_number", "the resident has no 宛名番号 yet; try again in a moment")
        # A card is registered after the facts it carries reached the 中間サーバー: the broker refuses
        # one registered before the person's latest 住民票関係情報 (a change of name) as out of date.
        cur.execute(
            "SELECT 1 FROM fuhon_outbox WHERE atena_number = %s AND system = 'jumin' AND answered_at IS NULL",
            (resident["atena_number"],),
        )
        if cur.fetchone():
            raise Refused(409, "atena_number", f"{FACTS_NOT_SENT}; try again in a moment")
        record(cur, "card", resident["resident_code"], ["serial"])
    status, answer = ask_chukan("/api/cards", {"atena_number": resident["atena_number"], "serial": serial}, CARD_TIMEOUT)
    if status != 201:
        reason = answer.get("error", "the 中間サーバー does not answer") if status else "the 中間サーバー does not answer"
        # 409: the person or the serial is not ready or taken; another 4xx: this system's own request
        # was refused (a bug here, 502); none or 5xx: the linkage is down (503).
        answered = 409 if status == 409 else 502 if 400 <= status < 500 else 503
        raise Refused(answered, None, f"the card was not registered: {reason}")
    log.info("registered a card")
    return reply({"card": {"serial": serial, "registered": True}}, 201)


def certificate(ref: str) -> dict:
    """The 住民票の写し of a resident (住民票の除票の写し once moved out), as data."""
    # 個人番号の記載 only when asked for, and for a named 事務.
    include = request.args.get("my_number") == "include"
    why = purpose()
    if include and why is None:
        raise Refused(400, "purpose", f"a 個人番号 on a certificate needs ?purpose=, one of {', '.join(PURPOSES)}")
    with transaction() as cur:
        resident = shown_fields(find(cur, ref), why if include else None)
        record(cur, "certificate", resident["resident_code"], resident, why if include else None)
    moved_out = resident["status"] == "moved-out"
    return {
        "title": "住民票の除票の写し" if moved_out else "住民票の写し",
        "municipality": MUNICIPALITY["name"],
        "municipality_code": MUNICIPALITY["code"],
        "issued_on": today().isoformat(),
        "event": EVENTS[resident["event"]],
        "resident": resident,
    }


@app.get("/api/residents/<ref>/certificate")
@needs("窓口")
def certificate_json(ref: str):
    return reply({"certificate": certificate(ref)})


CERTIFICATE_HTML = """<!DOCTYPE html>
<html lang="ja">
<head>
<meta charset="utf-8">
<title>{{ c.title }} — {{ c.municipality }}</title>
<style>
  body { font-family: serif; margin: 2em; }
  table { border-collapse: collapse; width: 100%; }
  th, td { border: 1px solid #000; padding: .4em .6em; text-align: left; }
  th { width: 12em; background: #eee; }
  @media print { body { margin: 0; } }
</style>
</head>
<body>
<h1>{{ c.title }}</h1>
<table>
<tr><th>氏名</th><td>{{ r.name }}</td></tr>
<tr><th>フリガナ</th><td>{{ r.kana }}</td></tr>
<tr><th>生年月日</th><td>{{ r.birth_date | japanese_date }}</td></tr>
<tr><th>性別</th><td>{{ r.sex }}</td></tr>
<tr><th>住所</th><td>{{ r.address }}</td></tr>
<tr><th>住民となった年月日</th><td>{{ r.event_date | japanese_date }}（{{ c.event }}）</td></tr>
{% if r.previous_address %}<tr><th>前住所</th><td>{{ r.previous_address }}</td></tr>{% endif %}
{% if r.moved_out_on %}<tr><th>転出</th><td>{{ r.moved_out_on | japanese_date }} {{ r.moved_out_to }}へ転出</td></tr>{% endif %}
<tr><th>住民票コード</th><td>{{ r.resident_code }}</td></tr>
{% if r.my_number %}<tr><th>個人番号</th><td>{{ r.my_number }}</td></tr>{% endif %}
</table>
<p>この写しは、住民票の原本と相違ないことを証明する。</p>
<p>{{ c.issued_on | japanese_date }}　{{ c.municipality }}長（地方公共団体コード {{ c.municipality_code }}）</p>
</body>
</html>
"""


@app.template_filter("japanese_date")
def written_date(iso: str) -> str:
    """2026-11-26 → 2026年11月26日 (the Western year: no era table to keep up to date)."""
    day = dt.date.fromisoformat(iso)
    return f"{day.year}年{day.month}月{day.day}日"


@app.get("/api/residents/<ref>/certificate.html")
@needs("窓口")
def certificate_html(ref: str):
    c = certificate(ref)
    # render_template_string autoescapes: whatever a clerk typed is shown, never interpreted.
    html = render_template_string(CERTIFICATE_HTML, c=c, r=c["resident"])
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}
