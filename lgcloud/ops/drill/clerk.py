"""A clerk at an office terminal, doing one errand at a steady rate during a drill: registering
residents (住民記録), or asking a former municipality for an income through 番号連携 (税).

The generator (``files/lgcloud-clerk``) runs inside the terminal VM (python3, stdlib only), goes
through the gateway by the service's name as a clerk's client would, and appends one JSON line
per attempt to its log: ``{"sent": t0, "done": t1, "status": 201, "code": "<receipt>"}`` —
`code` (a 住民票コード, a request id) only when the service acknowledged the errand. The drill reads
the log afterwards: it is the office's own record of what the service promised to keep.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ...model.codes import resident_code_is_valid
from ...model.naming import OFFICE_TLS, service_url
from ..clerks import sign_in
from ..lab import SCRIPTS, Lab

__all__ = ["Attempt", "Clerk", "Errand", "registration"]

GENERATOR = SCRIPTS / "lgcloud-clerk"
SCRIPT = "/usr/local/bin/lgcloud-clerk"
REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Errand:
    """What a drill's clerk does over and over: one request, and the receipt that acknowledges it."""

    name: str  # of the generator's files on the terminal (several clerks may share one)
    system: str  # the business system asked, by its service name
    path: str
    body: dict[str, Any]
    status: int  # the answer that acknowledges it
    receipt: tuple[str, ...]  # the keys to the receipt in the answer
    valid: Callable[[object], bool] = field(compare=False)  # what a receipt must look like
    timeout: float = 1.0  # seconds the clerk waits for an answer

    @property
    def log(self) -> str:
        # The clerk's own record of what it sent and what it was given: the office's receipt
        # book, which the drill reads. Kept 0600 beside the lab's other state, not with the logs.
        return f"/var/lib/lgcloud/{self.name}-attempts.jsonl"

    def run_file(self, what: str) -> str:
        return f"/run/lgcloud-{self.name}.{what}"


def registration() -> Errand:
    """A resident registered (a 転入届 of a month ago): the receipt is the new 住民票コード."""
    moved_in = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=30)
    body = {
        "name": "訓練 髙﨑",
        "kana": "クンレン タカサキ",
        "birth_date": "1990-04-01",
        "sex": "女",
        "address": "本町1-1",
        "event": "move-in",
        "event_date": moved_in.isoformat(),
        "previous_address": "別市1-1",
    }
    return Errand("clerk", "jumin", "/api/residents", body, 201, ("resident", "resident_code"), resident_code_is_valid)


def _is_request_id(value: object) -> bool:
    return isinstance(value, str) and REQUEST_ID.fullmatch(value) is not None


def income_inquiry(ref: str, year: int) -> Errand:
    """所得照会 of the resident `ref` to its former municipality (税, through the broker): the
    receipt is the query's request id, under which both sides keep their 情報提供等記録."""
    return Errand(
        "linkage-clerk",
        "zei",
        f"/api/residents/{ref}/former-income",
        {"year": year},
        200,
        ("income", "request_id"),
        _is_request_id,
        timeout=5.0,  # a brokered query crosses three services
    )


@dataclass(frozen=True)
class Attempt:
    sent: float
    done: float
    status: int | None
    code: str | None

    @property
    def acknowledged(self) -> bool:
        return self.code is not None


def _entries(text: str, valid: Callable[[object], bool] = resident_code_is_valid) -> list[dict[str, Any]]:
    """The log's well-formed entries. The log is written inside a tenant's VM, so nothing in it is
    trusted: a line that is cut, or not an attempt, is skipped; a receipt that is not `valid` (a
    住民票コード, a request id) is no acknowledgement (it never reaches a query)."""
    found = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the stop: not acknowledged to anyone
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), (int, float)) for k in ("sent", "done"))):
            continue
        if not valid(entry.get("code")):
            entry.pop("code", None)
        if not isinstance(entry.get("status"), int):
            entry.pop("status", None)
        found.append(entry)
    return found


class Clerk:
    """The load generator on one municipality's office terminal."""

    def __init__(self, lab: Lab, municipality: str, interval: float = 0.2, errand: Errand | None = None) -> None:
        self.lab, self.pair, self.interval = lab, lab.pair(municipality), interval
        self.errand = errand or registration()

    def start(self) -> None:
        vm, errand = self.pair.terminal, self.errand
        log, stop, session, request = (
            errand.log,
            errand.run_file("stop"),
            errand.run_file("session"),
            errand.run_file("request"),
        )
        self.lab.run(
            vm,
            f"cat > {SCRIPT} && chmod 0755 {SCRIPT} && rm -f {stop} {log} && mkdir -p {posixpath.dirname(log)}",
            stdin=GENERATOR.read_text(encoding="utf-8"),
        )
        spec = {
            "path": errand.path,
            "body": errand.body,
            "status": errand.status,
            "receipt": list(errand.receipt),
            "timeout": errand.timeout,
        }
        self.lab.run(vm, f"umask 077 && cat > {request}", stdin=json.dumps(spec, ensure_ascii=False))
        # The clerk signs in like any clerk, before the drill begins (the session outlives a failover:
        # it is a row of the municipality's database, replicated like the residents).
        token = sign_in(self.lab, self.pair.id).token
        self.lab.run(vm, f"umask 077 && cat > {session}", stdin=token)
        tls = (OFFICE_TLS["ca"], OFFICE_TLS["certificate"], OFFICE_TLS["key"])
        url = service_url(errand.system, self.pair.id)
        args = shlex.join((SCRIPT, url, str(self.interval), log, stop, *tls, session, request))
        self.lab.run(vm, f"setsid nohup {args} >/dev/null 2>&1 < /dev/null & echo $! > {errand.run_file('pid')}")

    def stop(self) -> list[Attempt]:
        pid, stop = self.errand.run_file("pid"), self.errand.run_file("stop")
        self.lab.run(
            self.pair.terminal, f"touch {stop}; while kill -0 $(cat {pid}) 2>/dev/null; do sleep 0.1; done", timeout=15
        )
        return self.attempts()

    def attempts(self) -> list[Attempt]:
        log = self.lab.run(self.pair.terminal, f"cat {self.errand.log} 2>/dev/null || true")
        return [Attempt(e["sent"], e["done"], e.get("status"), e.get("code")) for e in _entries(log, self.errand.valid)]

    def acknowledged_since(self, moment: float) -> bool:
        """Whether an errand sent after `moment` has been acknowledged (the office is served again)."""
        tail = self.lab.run(self.pair.terminal, f"tail -n 20 {self.errand.log} 2>/dev/null || true")
        return any(e.get("code") and e["sent"] >= moment for e in _entries(tail, self.errand.valid))

    def wait_served(self, since: float, timeout: float) -> bool:
        """Whether the office is served again within `timeout` (asked at least once)."""
        deadline = time.monotonic() + timeout
        while not self.acknowledged_since(since):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.3)
        return True
