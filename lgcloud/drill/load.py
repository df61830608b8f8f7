"""A clerk at an office terminal, registering residents at a steady rate during a drill.

The generator runs inside the terminal VM (python3, stdlib only), goes through the gateway by the
service's name as a clerk's client would, and appends one JSON line per attempt to its log:
``{"sent": t0, "done": t1, "status": 201, "code": "<住民票コード>"}`` — `code` only when the service
acknowledged the write. The drill reads the log afterwards: it is the office's own record of what
the service promised to keep.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass

from .lab import Lab

__all__ = ["Attempt", "Clerk"]

LOG = "/var/log/lgcloud-clerk.jsonl"
SCRIPT = "/usr/local/bin/lgcloud-clerk"
STOP = "/run/lgcloud-clerk.stop"
PID = "/run/lgcloud-clerk.pid"

GENERATOR = r'''#!/usr/bin/python3
"""lgcloud clerk: register residents at URL every INTERVAL seconds until STOP exists; log attempts."""
import json, os, sys, time, urllib.error, urllib.request
url, interval, log_path, stop = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
body = json.dumps({"name": "訓練 髙﨑", "kana": "クンレン タカサキ", "birth_date": "1990-04-01", "sex": "女",
                   "address": "本町1-1", "event": "move-in", "event_date": "2026-11-01",
                   "previous_address": "別市1-1"}).encode()
with open(log_path, "a", buffering=1) as log:
    next_at = time.time()
    while not os.path.exists(stop):
        sent = time.time()
        entry = {"sent": sent}
        request = urllib.request.Request(url + "/api/residents", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=1.0) as response:
                entry["status"] = response.status
                if response.status == 201:
                    entry["code"] = json.load(response)["resident"]["resident_code"]
        except urllib.error.HTTPError as error:
            entry["status"] = error.code
        except OSError as error:  # refused, reset, timed out: the clerk sees no answer
            entry["error"] = type(error).__name__
        entry["done"] = time.time()
        log.write(json.dumps(entry) + "\n")
        next_at = max(next_at + interval, time.time())
        time.sleep(max(0.0, next_at - time.time()))
'''


@dataclass(frozen=True)
class Attempt:
    sent: float
    done: float
    status: int | None
    code: str | None

    @property
    def acknowledged(self) -> bool:
        return self.code is not None


class Clerk:
    """The load generator on one municipality's office terminal."""

    def __init__(self, lab: Lab, municipality: str, interval: float = 0.2):
        self.lab, self.pair, self.interval = lab, lab.pair(municipality), interval

    def start(self) -> None:
        vm = self.pair.terminal
        self.lab.run(vm, f"cat > {SCRIPT} && chmod 0755 {SCRIPT} && rm -f {STOP} {LOG}", stdin=GENERATOR)
        args = " ".join(shlex.quote(a) for a in (SCRIPT, self.pair.url, str(self.interval), LOG, STOP))
        self.lab.run(vm, f"setsid nohup {args} >/dev/null 2>&1 < /dev/null & echo $! > {PID}")

    def stop(self) -> list[Attempt]:
        vm = self.pair.terminal
        self.lab.run(vm, f"touch {STOP}; while kill -0 $(cat {PID}) 2>/dev/null; do sleep 0.1; done", timeout=10)
        return self.attempts()

    def attempts(self) -> list[Attempt]:
        lines = self.lab.run(self.pair.terminal, f"cat {LOG} 2>/dev/null || true").splitlines()
        found = []
        for line in lines:
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the stop: not acknowledged to anyone
            found.append(Attempt(e["sent"], e["done"], e.get("status"), e.get("code")))
        return found

    def acknowledged_since(self, moment: float) -> bool:
        """Whether a write sent after `moment` has been acknowledged (the office is served again)."""
        tail = self.lab.run(self.pair.terminal, f"tail -n 20 {LOG} 2>/dev/null || true")
        for line in tail.splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if e.get("code") and e["sent"] >= moment:
                return True
        return False

    def wait_served(self, since: float, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acknowledged_since(since):
                return True
            time.sleep(0.3)
        return False
