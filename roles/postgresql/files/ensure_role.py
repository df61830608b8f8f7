#!/usr/bin/python3
"""Ensure a PostgreSQL login role with a password; print `ok` or `changed: <what>`.

Run as root on the server (ansible.builtin.script): it becomes the OS user postgres and
connects over the Unix socket (peer auth). The password comes from the environment
(POSTGRESQL_ROLE_PASSWORD), is checked against the stored SCRAM-SHA-256 verifier and, only
when it differs, sent already hashed, so the plain text never reaches the server or its log.
Passwords are expected in ASCII (the stack generates URL-safe tokens): no SASLprep is applied.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
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
    return (base64.b64encode(hashlib.sha256(client_key).digest()).decode(),
            base64.b64encode(server_key).decode())


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
        hmac.compare_digest(a, b) for a, b in zip(expected, (stored_key, server_key)))


def verifier_of(password: str) -> str:
    salt = secrets.token_bytes(16)
    stored_key, server_key = _keys(password, salt, ITERATIONS)
    return f"SCRAM-SHA-256${ITERATIONS}:{base64.b64encode(salt).decode()}${stored_key}:{server_key}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--replication", action="store_true", help="the role may stream WAL")
    parser.add_argument("--socket-dir", default="/var/run/postgresql")
    parser.add_argument("--port", default="5432")
    args = parser.parse_args()
    password = os.environ["POSTGRESQL_ROLE_PASSWORD"]

    postgres = pwd.getpwnam("postgres")
    os.setgid(postgres.pw_gid)
    os.setuid(postgres.pw_uid)
    # Never wait for a synchronous standby that may not exist yet.
    connection = psycopg2.connect(host=args.socket_dir, port=args.port, dbname="postgres", user="postgres",
                                  options="-c synchronous_commit=local")
    connection.autocommit = True
    role = sql.Identifier(args.name)
    replication = sql.SQL("REPLICATION" if args.replication else "NOREPLICATION")
    changes = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolcanlogin, rolreplication, rolpassword FROM pg_authid WHERE rolname = %s",
                       (args.name,))
        row = cursor.fetchone()
        if row is None:
            cursor.execute(sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                role, replication, sql.Literal(verifier_of(password))))
            changes.append("created")
        else:
            can_login, can_replicate, current = row
            if not can_login or can_replicate != args.replication:
                cursor.execute(sql.SQL("ALTER ROLE {} LOGIN {}").format(role, replication))
                changes.append("attributes")
            if not matches(current, password):
                cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(verifier_of(password))))
                changes.append("password")
    connection.close()
    print(f"changed: {', '.join(changes)}" if changes else "ok")


if __name__ == "__main__":
    main()
