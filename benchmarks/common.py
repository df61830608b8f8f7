"""What the benchmark scripts share: timing a child process, and writing results."""

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


def latency_figures(total: int, data: dict[str, Any]) -> dict[str, float]:
    """Requests/s, p50 and p95 of a load script's answer: {"seconds", "latencies" (sorted)}."""
    latencies = data["latencies"]
    return {
        "requests_per_s": total / data["seconds"],
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95) - 1],
    }


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
