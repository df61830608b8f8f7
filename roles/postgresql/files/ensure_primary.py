#!/usr/bin/python3
"""Ensure what a primary holds for its replica and its app, in one run; print a JSON report.

Run as root on the server (ansible.builtin.script): it becomes the OS user postgres and connects
over the Unix socket (peer auth). It ensures, changing only what differs:

- the replication role and the application role, logins with the stack's passwords;
- the replica's physical replication slot;
- the application database, owned by the application role;
- the アクセス記録 and the clerks' accounts, sessions and sign-ins (schemas owned by postgres);
- the municipality's tenant of the 中間サーバー: its database (owned by postgres), the role the
  中間サーバー connects with, and the 副本, the links of 宛名番号 to 符号 and the 情報提供等記録
  (append-only for that role);
- the first clerks lgcloud provides (LGCLOUD_FIRST_CLERKS: a JSON list), created when absent
  and never changed after: a 管理者 may have changed them since;

and reports the cluster's system identifier, which the replica must share::

    {"changes": ["role replicator: created", ...], "system_identifier": "7312..."}

The passwords come from the environment (POSTGRESQL_REPLICATION_PASSWORD, POSTGRESQL_APP_PASSWORD),
are checked against the stored SCRAM-SHA-256 verifiers and, only when they differ, sent already
hashed, so the plain text never reaches the server or its log. Passwords are expected in ASCII (the
stack generates URL-safe tokens): no SASLprep is applied. One connection, one Python start-up: the
VM has a fraction of a CPU.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import pwd
import secrets

import psycopg2
from psycopg2 import sql

ITERATIONS = 4096  # PostgreSQL's scram_iterations default


def _keys(password: str, salt: bytes, iterations: int) -> tuple[str, str]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return (base64.b64encode(hashlib.sha256(client_key).digest()).decode(), base64.b64encode(server_key).decode())


def matches(verifier: str | None, password: str) -> bool:
    """True if `verifier` (pg_authid.rolpassword) is the SCRAM-SHA-256 verifier of `password`."""
    try:
        method, rest = verifier.split("$", 1)
        parameters, keys = rest.split("$")
        iterations, salt = parameters.split(":")
        stored_key, server_key = keys.split(":")
        expected = _keys(password, base64.b64decode(salt), int(iterations))
    except (AttributeError, ValueError):
        return False
    return method == "SCRAM-SHA-256" and all(
        hmac.compare_digest(a, b) for a, b in zip(expected, (stored_key, server_key))
    )


def verifier_of(password: str) -> str:
    salt = secrets.token_bytes(16)
    stored_key, server_key = _keys(password, salt, ITERATIONS)
    return f"SCRAM-SHA-256${ITERATIONS}:{base64.b64encode(salt).decode()}${stored_key}:{server_key}"


def ensure_role(cursor, name: str, password: str, replication: bool) -> list[str]:
    """A login role `name` with `password`, allowed to stream WAL or not."""
    role = sql.Identifier(name)
    may_replicate = sql.SQL("REPLICATION" if replication else "NOREPLICATION")
    cursor.execute("SELECT rolcanlogin, rolreplication, rolpassword FROM pg_authid WHERE rolname = %s", (name,))
    row = cursor.fetchone()
    if row is None:
        cursor.execute(
            sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                role, may_replicate, sql.Literal(verifier_of(password))
            )
        )
        return [f"role {name}: created"]
    changes = []
    can_login, can_replicate, current = row
    if not can_login or can_replicate != replication:
        cursor.execute(sql.SQL("ALTER ROLE {} LOGIN {}").format(role, may_replicate))
        changes.append(f"role {name}: attributes")
    if not matches(current, password):
        cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(verifier_of(password))))
        changes.append(f"role {name}: password")
    return changes


def ensure_slot(cursor, slot: str) -> list[str]:
    """The replica's physical slot, reserving WAL from now on."""
    cursor.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    if cursor.fetchone():
        return []
    cursor.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    return [f"slot {slot}: created"]


def ensure_database(cursor, name: str, owner: str, encoding: str, locale: str) -> list[str]:
    """The application database, created from template0 and owned by `owner`."""
    cursor.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,))
    row = cursor.fetchone()
    if row is None:
        cursor.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LOCALE {}").format(
                sql.Identifier(name), sql.Identifier(owner), sql.Literal(encoding), sql.Literal(locale)
            )
        )
        return [f"database {name}: created"]
    if row[0] != owner:
        cursor.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner)))
        return [f"database {name}: owner"]
    return []


# アクセス記録: every look at a resident, appended by the app, which can neither change nor remove
# a row. The schema and table belong to postgres, not to the app's role that owns the database
# (an owner of the schema could drop the table); the app may INSERT and SELECT only.
ACCESS_RECORDS = """
CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION postgres;
CREATE TABLE IF NOT EXISTS audit.access_records (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    office        text NOT NULL,      -- the terminal the request came from, as the gateway saw it
    clerk         text,               -- the 職員ID, once clerks sign in
    action        text NOT NULL,      -- register, read, lookup, move-out, certificate
    resident_code char(11) NOT NULL CHECK (resident_code ~ '^[0-9]{11}$'),
    fields        text[] NOT NULL,    -- what was shown or written
    purpose       text                -- the 事務 named for a 個人番号; NULL when none was shown
);
CREATE INDEX IF NOT EXISTS access_records_resident ON audit.access_records (resident_code, at);
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
REVOKE ALL ON audit.access_records FROM PUBLIC;
"""


# Clerks (職員) of the municipality: accounts, their sessions, and every sign-in attempt. The app
# checks passwords (scrypt) and TOTP codes itself; it may update an account (failures, lockout,
# the last TOTP step used) but never delete one, and sign-ins are appended like access records.
STAFF = """
CREATE SCHEMA IF NOT EXISTS staff AUTHORIZATION postgres;
CREATE TABLE IF NOT EXISTS staff.clerks (
    clerk_id      text PRIMARY KEY CHECK (clerk_id ~ '^[a-z0-9][a-z0-9-]{2,31}$'),  -- 職員ID
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('窓口', '管理者')),
    password      text NOT NULL,      -- scrypt$N$r$p$salt$key (base64), never the password
    totp_secret   text NOT NULL,      -- the second factor's shared secret (base32)
    last_step     bigint NOT NULL DEFAULT 0,  -- the TOTP time step last accepted: a code works once
    failures      integer NOT NULL DEFAULT 0, -- wrong sign-ins since the last good one
    locked_until  timestamptz,
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL
);
-- A password a 管理者 handed over works for one thing only: choosing the clerk's own. Added to an
-- older table once: even ALTER … IF NOT EXISTS takes the table's lock, and waits for the commits that
-- wait for a synchronous replica this configure has yet to start.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'staff' AND table_name = 'clerks' AND column_name = 'must_change'
    ) THEN
        ALTER TABLE staff.clerks ADD COLUMN must_change boolean NOT NULL DEFAULT false;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS staff.sessions (
    token_hash    bytea PRIMARY KEY,  -- SHA-256 of the bearer token: the token itself is the clerk's
    clerk_id      text NOT NULL REFERENCES staff.clerks,
    office        text NOT NULL,      -- a session is good from the office it began at only
    started_at    timestamptz NOT NULL DEFAULT now(),
    seen_at       timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz
);
CREATE TABLE IF NOT EXISTS audit.sign_ins (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    office        text NOT NULL,
    clerk_id      text,               -- as given, when it is a well-formed 職員ID
    outcome       text NOT NULL,      -- signed-in, wrong-password, wrong-code, locked, ...
    by_clerk      text                -- the 管理者 who unlocked or disabled the account
);
CREATE INDEX IF NOT EXISTS sign_ins_clerk ON audit.sign_ins (clerk_id, at);
REVOKE ALL ON SCHEMA staff FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA staff FROM PUBLIC;
REVOKE ALL ON audit.sign_ins FROM PUBLIC;
"""

GRANTS = (
    "GRANT USAGE ON SCHEMA audit, staff TO {}",
    "GRANT INSERT, SELECT ON audit.access_records, audit.sign_ins TO {}",
    "GRANT USAGE ON SEQUENCE audit.access_records_id_seq, audit.sign_ins_id_seq TO {}",
    "GRANT SELECT, INSERT, UPDATE ON staff.clerks, staff.sessions TO {}",
)


def ensure_records(host: str, port: str, database: str, app_user: str, first_clerks: list[dict]) -> list[str]:
    connection = psycopg2.connect(
        host=host, port=port, dbname=database, user="postgres", options="-c synchronous_commit=local"
    )
    changes = []
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT to_regclass('audit.access_records') IS NOT NULL, to_regclass('staff.clerks') IS NOT NULL"
            )
            existed = cursor.fetchone()
            cursor.execute(ACCESS_RECORDS)
            cursor.execute(STAFF)
            changes += [] if existed[0] else ["access records: created"]
            changes += [] if existed[1] else ["clerks: created"]
            for grant in GRANTS:
                cursor.execute(sql.SQL(grant).format(sql.Identifier(app_user)))
            for clerk in first_clerks:
                cursor.execute(
                    "INSERT INTO staff.clerks (clerk_id, name, role, password, totp_secret, created_by)"
                    " VALUES (%(clerk_id)s, %(name)s, %(role)s, %(password)s, %(totp_secret)s, 'lgcloud')"
                    " ON CONFLICT (clerk_id) DO NOTHING",
                    clerk,
                )
                if cursor.rowcount:
                    changes.append(f"clerk {clerk['clerk_id']}: created")
    finally:
        connection.close()
    return changes


# The 中間サーバー's tenant of this municipality: keyed by 宛名番号 and 符号, never a 個人番号 or
# 住民票コード. The 情報提供等記録 are a hash chain the 中間サーバー appends to and never changes.
# No ALTER TABLE runs here on every configure: it would wait for the lock of a commit that waits
# for a synchronous replica the same configure has yet to start (a change of these tables needs a
# guarded, one-off migration).
CHUKAN = """
CREATE SCHEMA IF NOT EXISTS chukan AUTHORIZATION postgres;
CREATE TABLE IF NOT EXISTS chukan.linked (
    atena_number char(10) PRIMARY KEY CHECK (atena_number ~ '^[0-9]{10}$'),
    fugo         char(32) NOT NULL UNIQUE CHECK (fugo ~ '^[A-Z2-7]{32}$'),
    linked_at    timestamptz NOT NULL DEFAULT now(),
    -- Whether the person lives in the municipality now or did once, as its registry told: what a
    -- former municipality provides is provided only of a former resident.
    residence    text NOT NULL DEFAULT 'current' CHECK (residence IN ('current', 'former')),
    residence_at timestamptz
);
CREATE TABLE IF NOT EXISTS chukan.fuhon (
    atena_number  char(10) NOT NULL CHECK (atena_number ~ '^[0-9]{10}$'),
    item          text NOT NULL,
    value         jsonb NOT NULL,
    registered_by text NOT NULL,   -- the business system: zei, jumin, …
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (atena_number, item)
);
CREATE TABLE IF NOT EXISTS chukan.records (
    position bigint PRIMARY KEY CHECK (position >= 0),
    record   text NOT NULL,        -- canonical JSON: what the hash covers
    hash     char(64) NOT NULL
);
-- Where the chain begins once records past their retention were purged (as postgres, by the
-- operator's `lgcloud linkage purge-records`): the last purged record's position and hash, which
-- the first kept record follows on from. The 中間サーバー neither reads nor writes it.
CREATE TABLE IF NOT EXISTS chukan.chain_base (
    position  bigint PRIMARY KEY CHECK (position >= 0),
    hash      char(64) NOT NULL,
    purged    bigint NOT NULL,     -- how many records that purge removed
    purged_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON ALL TABLES IN SCHEMA chukan FROM PUBLIC;
"""
CHUKAN_GRANTS = (
    "GRANT USAGE ON SCHEMA chukan TO {}",
    "GRANT SELECT, INSERT ON chukan.linked, chukan.records TO {}",
    "GRANT UPDATE (residence, residence_at) ON chukan.linked TO {}",
    "GRANT SELECT, INSERT, UPDATE ON chukan.fuhon TO {}",
)


def ensure_chukan(host: str, port: str, database: str, user: str) -> list[str]:
    connection = psycopg2.connect(
        host=host, port=port, dbname=database, user="postgres", options="-c synchronous_commit=local"
    )
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('chukan.records') IS NOT NULL")
            existed = cursor.fetchone()[0]
            cursor.execute(CHUKAN)
            for grant in CHUKAN_GRANTS:
                cursor.execute(sql.SQL(grant).format(sql.Identifier(user)))
    finally:
        connection.close()
    return [] if existed else ["中間サーバー tenant: created"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replication-user", required=True)
    parser.add_argument("--app-user", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--encoding", default="UTF8")
    parser.add_argument("--locale", default="C.UTF-8")
    parser.add_argument("--slot", required=True, help="the replica's physical replication slot")
    parser.add_argument("--chukan-user", required=True, help="the role the 中間サーバー connects with")
    parser.add_argument("--chukan-database", required=True, help="this municipality's 中間サーバー tenant")
    parser.add_argument("--socket-dir", default="/var/run/postgresql")
    parser.add_argument("--port", default="5432")
    args = parser.parse_args()

    postgres = pwd.getpwnam("postgres")
    os.setgid(postgres.pw_gid)
    os.setuid(postgres.pw_uid)
    # Never wait for a synchronous standby that may not exist yet.
    connection = psycopg2.connect(
        host=args.socket_dir, port=args.port, dbname="postgres", user="postgres", options="-c synchronous_commit=local"
    )
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction
    with connection.cursor() as cursor:
        changes = ensure_role(cursor, args.replication_user, os.environ["POSTGRESQL_REPLICATION_PASSWORD"], True)
        changes += ensure_role(cursor, args.app_user, os.environ["POSTGRESQL_APP_PASSWORD"], False)
        changes += ensure_slot(cursor, args.slot)
        changes += ensure_database(cursor, args.database, args.app_user, args.encoding, args.locale)
        changes += ensure_role(cursor, args.chukan_user, os.environ["POSTGRESQL_CHUKAN_PASSWORD"], False)
        changes += ensure_database(cursor, args.chukan_database, "postgres", args.encoding, args.locale)
        cursor.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC; GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(args.chukan_database),
                sql.Identifier(args.chukan_database),
                sql.Identifier(args.chukan_user),
            )
        )
        cursor.execute("SELECT system_identifier FROM pg_control_system()")
        system_identifier = str(cursor.fetchone()[0])
    connection.close()
    first_clerks = json.loads(os.environ.get("LGCLOUD_FIRST_CLERKS", "[]"))
    changes += ensure_records(args.socket_dir, args.port, args.database, args.app_user, first_clerks)
    changes += ensure_chukan(args.socket_dir, args.port, args.chukan_database, args.chukan_user)
    print(json.dumps({"changes": changes, "system_identifier": system_identifier}))


if __name__ == "__main__":
    main()
