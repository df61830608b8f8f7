"""A provided clerk signs in at an office terminal, as any clerk's client would: from the terminal,
over the office's TLS certificate, with password and one-time code. The drills' clerk and the
tests sign in here; the session token is the caller's to keep.

And the operator's break-glass: a clerk's password and second factor reset in the municipality's
database, as postgres on the serving primary, when no 管理者 can do it through the registry."""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import EXIT_BAD_INPUT
from ..state.clerks import DRILL_CLERK, PROVIDED, ClerkAccount, keep_provided, new_account, provided_clerk
from ..state.directory import file_lock, state_dir, write_atomic
from ..state.failover import served_from_backup
from .lab import Lab, LabError

__all__ = ["ClerkSession", "reset_clerk", "sign_in"]


@dataclass(frozen=True)
class ClerkSession:
    municipality: str
    clerk_id: str
    role: str
    token: str


def _fresh_step(stack: str, municipality: str, account: ClerkAccount) -> str:
    """A code of a TOTP step no earlier sign-in of this account used (the app takes a code once):
    now, or the next step, which the app accepts for clocks that drift; else wait for a new one.
    The caller holds _steps_lock until its sign-in has answered."""
    path = state_dir(stack) / "clerk-steps.json"
    key = f"{municipality}/{account.clerk_id}"
    used = json.loads(path.read_text()) if path.exists() else {}
    step = max(account.step(), used.get(key, 0) + 1)
    while step > account.step() + 1:  # now and next both used: wait for the next step
        time.sleep(0.5)
    used[key] = step
    write_atomic(path, json.dumps(used), 0o600)
    return account.code(step)


def _steps_lock(stack: str) -> Path:
    return state_dir(stack) / ".clerk-steps.lock"


def sign_in(lab: Lab, municipality: str, clerk_id: str | None = None) -> ClerkSession:
    """Sign a provided clerk (the drills' 窓口 clerk by default) in at the municipality's terminal."""
    pair = lab.pair(municipality)
    account = provided_clerk(lab.stack, pair.id, clerk_id or DRILL_CLERK)
    # Under the lock until the registry answered: another sign-in of the account must not use a
    # later step first (the registry would then refuse this one's code as used).
    with file_lock(_steps_lock(lab.stack)):
        code = _fresh_step(lab.stack, pair.id, account)
        body = {"clerk_id": account.clerk_id, "password": account.password, "code": code}
        # The body on stdin: the password is never on a command line, not even the terminal's.
        out = lab.run(
            pair.terminal,
            "curl -sS --max-time 15 -H 'Content-Type: application/json' --data-binary @- -w '\\n%{http_code}' "
            + shlex.quote(f"{pair.url}/api/session"),
            stdin=json.dumps(body),
            timeout=30,
        )
    answer, _, status = out.rpartition("\n")
    if status.strip() != "201":
        raise LabError(
            f"{pair.terminal}: clerk {account.clerk_id} of {pair.id} could not sign in (HTTP {status.strip()}): "
            f"{answer[:300]}",
            f"is the lab configured (`lgcloud configure --stack {lab.stack}`)? Locked: a 管理者 unlocks it",
        )
    session = json.loads(answer)["session"]
    return ClerkSession(pair.id, session["clerk_id"], session["role"], session["token"])


_SAFE = re.compile(r"[A-Za-z0-9$+/=._-]+")  # what a 職員ID, an scrypt hash and a base32 secret hold


def reset_clerk(lab: Lab, municipality: str, clerk_id: str) -> ClerkAccount:
    """A new password and TOTP secret for `clerk_id`, unlocked, every session ended, recorded in
    the sign-ins. A provided account (kanri01, kunren01) is made again if it is gone and kept in
    clerks.json; any other clerk must change the new password at the next sign-in."""
    pair = lab.pair(municipality)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{2,31}", clerk_id):
        raise LabError(f"{clerk_id!r} is not a 職員ID (3 to 32 of a-z, 0-9 and -)", exit_code=EXIT_BAD_INPUT)
    provided = provided_clerk(lab.stack, pair.id, clerk_id) if clerk_id in PROVIDED else None
    fresh = new_account(clerk_id, *((provided.name, provided.role) if provided else ()))
    assert all(_SAFE.fullmatch(v) for v in (clerk_id, fresh.password_hash, fresh.totp_secret))  # SQL literals below
    exists = f"EXISTS (SELECT 1 FROM staff.clerks WHERE clerk_id = '{clerk_id}')"
    statements = [
        f"UPDATE staff.clerks SET password = '{fresh.password_hash}', totp_secret = '{fresh.totp_secret}',"
        " last_step = 0, failures = 0, locked_until = NULL, disabled_at = NULL,"
        f" must_change = {'false' if provided else 'true'} WHERE clerk_id = '{clerk_id}';",
        f"UPDATE staff.sessions SET ended_at = now() WHERE clerk_id = '{clerk_id}' AND ended_at IS NULL;",
    ]
    if provided:  # gone with a restore, say: made again
        statements.append(
            "INSERT INTO staff.clerks (clerk_id, name, role, password, totp_secret, created_by)"
            f" SELECT '{clerk_id}', $${provided.name}$$, $${provided.role}$$, '{fresh.password_hash}',"
            f" '{fresh.totp_secret}', 'lgcloud' WHERE NOT {exists};"
        )
    statements += [
        "INSERT INTO audit.sign_ins (office, clerk_id, outcome, by_clerk)"
        f" SELECT 'lgcloud', '{clerk_id}', 'reset', 'lgcloud' WHERE {exists};",
        f"SELECT 'found ' || {exists};",
    ]
    primary = pair.replica if pair.id in served_from_backup(lab.stack) else pair.db
    # The script on stdin, in one transaction: the hash and the secret are on no command line.
    out = lab.run(
        primary,
        "chpst -u postgres psql -XAtq -1 -v ON_ERROR_STOP=1 -d jumin -f -",
        stdin="\n".join(statements) + "\n",
        timeout=60,
    )
    if "found true" not in out.splitlines():
        raise LabError(f"{pair.id} has no clerk {clerk_id}; nothing was changed", exit_code=EXIT_BAD_INPUT)
    if provided:
        keep_provided(lab.stack, pair.id, fresh)
    return fresh
