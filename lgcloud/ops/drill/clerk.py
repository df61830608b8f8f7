"""A clerk at an office terminal, registering residents at a steady rate during a drill.

The generator (``files/lgcloud-clerk``) runs inside the terminal VM (python3, stdlib only), goes
through the gateway by the service's name as a clerk's client would, and appends one JSON line
per attempt to its log: ``{"sent": t0, "done": t1, "status": 201, "code": "<住民票コード>"}`` —
`code` only when the service acknowledged the write. The drill reads the log afterwards: it is
the office's own record of what the service promised to keep.
"""

from __future__ import annotations

import json
import posixpath
import shlex
import time
from dataclasses import dataclass
from typing import Any

from ...model.codes import resident_code_is_valid
from ...model.naming import OFFICE_TLS
from ..clerks import sign_in
from ..lab import SCRIPTS, Lab

__all__ = ["Attempt", "Clerk"]

GENERATOR = SCRIPTS / "lgcloud-clerk"
# The clerk's own record of what it sent and what it was given (住民票コード): the office's receipt
# book, which the drill reads to measure RPO. Kept 0600 beside the lab's other state, not with the logs.
LOG = "/var/lib/lgcloud/clerk-attempts.jsonl"
SCRIPT = "/usr/local/bin/lgcloud-clerk"
STOP = "/run/lgcloud-clerk.stop"
SESSION = "/run/lgcloud-clerk.session"  # the signed-in clerk's token, root's alone
PID = "/run/lgcloud-clerk.pid"


@dataclass(frozen=True)
class Attempt:
    sent: float
    done: float
    status: int | None
    code: str | None

    @property
    def acknowledged(self) -> bool:
        return self.code is not None


def _entries(text: str) -> list[dict[str, Any]]:
    """The log's well-formed entries. The log is written inside a tenant's VM, so nothing in it is
    trusted: a line that is cut, or not an attempt, is skipped; a code that is not a 住民票コード
    is no acknowledgement (it never reaches a query)."""
    found = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the stop: not acknowledged to anyone
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), (int, float)) for k in ("sent", "done"))):
            continue
        if not resident_code_is_valid(entry.get("code")):
            entry.pop("code", None)
        if not isinstance(entry.get("status"), int):
            entry.pop("status", None)
        found.append(entry)
    return found


class Clerk:
    """The load generator on one municipality's office terminal."""

    def __init__(self, lab: Lab, municipality: str, interval: float = 0.2) -> None:
        self.lab, self.pair, self.interval = lab, lab.pair(municipality), interval

    def start(self) -> None:
        vm = self.pair.terminal
        self.lab.run(
            vm,
            f"cat > {SCRIPT} && chmod 0755 {SCRIPT} && rm -f {STOP} {LOG} && mkdir -p {posixpath.dirname(LOG)}",
            stdin=GENERATOR.read_text(encoding="utf-8"),
        )
        # The clerk signs in like any clerk, before the drill begins (the session outlives a failover:
        # it is a row of the municipality's database, replicated like the residents).
        token = sign_in(self.lab, self.pair.id).token
        self.lab.run(vm, f"umask 077 && cat > {SESSION}", stdin=token)
        tls = (OFFICE_TLS["ca"], OFFICE_TLS["certificate"], OFFICE_TLS["key"])
        args = " ".join(shlex.quote(a) for a in (SCRIPT, self.pair.url, str(self.interval), LOG, STOP, *tls, SESSION))
        self.lab.run(vm, f"setsid nohup {args} >/dev/null 2>&1 < /dev/null & echo $! > {PID}")

    def stop(self) -> list[Attempt]:
        vm = self.pair.terminal
        self.lab.run(vm, f"touch {STOP}; while kill -0 $(cat {PID}) 2>/dev/null; do sleep 0.1; done", timeout=10)
        return self.attempts()

    def attempts(self) -> list[Attempt]:
        log = self.lab.run(self.pair.terminal, f"cat {LOG} 2>/dev/null || true")
        return [Attempt(e["sent"], e["done"], e.get("status"), e.get("code")) for e in _entries(log)]

    def acknowledged_since(self, moment: float) -> bool:
        """Whether a write sent after `moment` has been acknowledged (the office is served again)."""
        tail = self.lab.run(self.pair.terminal, f"tail -n 20 {LOG} 2>/dev/null || true")
        return any(e.get("code") and e["sent"] >= moment for e in _entries(tail))

    def wait_served(self, since: float, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acknowledged_since(since):
                return True
            time.sleep(0.3)
        return False
