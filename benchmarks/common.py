"""What the benchmark scripts share: timing a child process, the timed load a VM runs, and writing
results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"  # git-ignored
LGCLOUD = str(Path(sys.executable).with_name("lgcloud"))  # the CLI of the venv running the benchmark


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_mb: float  # the child's own peak, from wait4: other children do not blur it
    returncode: int


def run(*cmd: str, check: bool = True) -> Run:
    """Run `cmd` to completion with its output discarded; stop the benchmark if it fails and `check`."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot block on it
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        if check and proc.returncode:
            err.seek(0)
            raise SystemExit(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
    return Run(seconds, usage.ru_maxrss / 1024, proc.returncode)


# Ends every load script a VM runs (see load_script): `total` requests, `clients` at a time, each
# timed from sending it to its answer's status; prints {"seconds", "latencies" (sorted)}, what
# latency_figures reads.
_TIMED_REQUESTS = r"""
import json, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
def timed_requests(request, total, clients, status=200, context=None):
    def ask(i):
        prepared = request(i)
        started = time.perf_counter()
        with urllib.request.urlopen(prepared, timeout=30, context=context) as response:
            assert response.status == status, response.status
        return time.perf_counter() - started
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(ask, range(total)))
    print(json.dumps({"seconds": time.perf_counter() - started, "latencies": latencies}))
"""


def load_script(setup: str) -> str:
    """A script for a VM's python3 (`-` or `-c`): `setup` reads its arguments and ends with a call of
    ``timed_requests(request, total, clients, status=200, context=None)``, `request(i)` making the
    i-th urllib Request (untimed)."""
    return _TIMED_REQUESTS + setup


def latency_figures(total: int, data: dict[str, Any]) -> dict[str, float]:
    """Requests/s, p50 and p95 of a load script's answer: {"seconds", "latencies" (sorted)}."""
    latencies = data["latencies"]
    return {
        "requests_per_s": total / data["seconds"],
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95) - 1],
    }


def latency_text(figures: dict[str, float]) -> str:
    """latency_figures as the tables show them: "12.3 req/s, p50 80 ms, p95 150 ms"."""
    return f"{figures['requests_per_s']:.1f} req/s, p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms"


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    print(title)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def save(name: str, result: dict[str, Any]) -> Path:
    """Write `result` as results/<name>-<time>.json, with the machine's load for judging noise."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    document = {"benchmark": name, "at": stamp, "cpus": os.cpu_count(), "loadavg_after": os.getloadavg(), **result}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
