"""A provided clerk signs in at an office terminal, as any clerk's client would: from the terminal,
over the office's TLS certificate, with password and one-time code. The drills' clerk and the
tests sign in here; the session token is the caller's to keep."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass

from ..state.clerks import DRILL_CLERK, ClerkAccount, provided_clerk
from ..state.directory import file_lock, state_dir, write_atomic
from .lab import Lab, LabError

__all__ = ["ClerkSession", "sign_in"]


@dataclass(frozen=True)
class ClerkSession:
    municipality: str
    clerk_id: str
    role: str
    token: str


def _fresh_step(stack: str, municipality: str, account: ClerkAccount) -> str:
    """A code of a TOTP step no earlier sign-in of this account used (the app takes a code once):
    now, or the next step, which the app accepts for clocks that drift; else wait for a new one."""
    path = state_dir(stack) / "clerk-steps.json"
    key = f"{municipality}/{account.clerk_id}"
    with file_lock(state_dir(stack) / ".clerk-steps.lock"):
        used = json.loads(path.read_text()) if path.exists() else {}
        step = max(account.step(), used.get(key, 0) + 1)
        while step > account.step() + 1:  # now and next both used: wait for the next step
            time.sleep(0.5)
        used[key] = step
        write_atomic(path, json.dumps(used), 0o600)
    return account.code(step)


def sign_in(lab: Lab, municipality: str, clerk_id: str | None = None) -> ClerkSession:
    """Sign a provided clerk (the drills' 窓口 clerk by default) in at the municipality's terminal."""
    pair = lab.pair(municipality)
    account = provided_clerk(lab.stack, pair.id, clerk_id or DRILL_CLERK)
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
