"""住民記録 write throughput from an office terminal through the gateway: sync vs async replication.

    /tmp/venv/bin/python benchmarks/jumin_writes.py [--stack dev] [--requests 300] [--clients 4]

Registers residents as a clerk would (POST /api/residents via jumin.<id>.lgwan.test) from Ａ市's
terminal (synchronous replication) and from Ｃ村's (asynchronous); prints requests/s and latency.
The load runs inside the terminal VM, bounded in count, against the lab's own gateway only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import print_table, save

from lgcloud.model.config import load_stack
from lgcloud.ops.access import ssh_config_path

# Runs on the terminal: `clients` threads share `requests` registrations; prints latencies.
LOAD = r"""
import json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, total, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def register(i):
    body = json.dumps({"name": f"負荷 {i}", "kana": "フカ", "birth_date": "1980-01-01", "sex": "女",
                       "address": "本町1-1", "event": "move-in", "event_date": "2026-11-01"}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, response.status
    return time.perf_counter() - started
started = time.perf_counter()
with ThreadPoolExecutor(clients) as pool:
    latencies = sorted(pool.map(register, range(total)))
print(json.dumps({"seconds": time.perf_counter() - started, "latencies": latencies}))
"""


def measure(stack: str, municipality: str, total: int, clients: int) -> dict:
    url = f"http://jumin.{municipality}.lgwan.test/api/residents"
    result = subprocess.run(
        [
            "ssh",
            "-F",
            str(ssh_config_path(stack)),
            f"{municipality}-terminal",
            "python3",
            "-",
            url,
            str(total),
            str(clients),
        ],
        input=LOAD,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise SystemExit(f"load from {municipality}-terminal failed:\n{result.stderr[-2000:]}")
    data = json.loads(result.stdout)
    latencies = data["latencies"]
    return {
        "requests_per_s": total / data["seconds"],
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95) - 1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    cfg = load_stack(args.stack)
    sync = next(m for m in cfg.municipalities if m.replication == "sync")
    async_ = next(m for m in cfg.municipalities if m.replication == "async")
    figures = {
        m.id: {"replication": m.replication, **measure(args.stack, m.id, args.requests, args.clients)}
        for m in (sync, async_)
    }
    rows = [
        (
            f"{m} ({f['replication']})",
            f"{f['requests_per_s']:.0f} req/s, p50 {f['p50_ms']:.1f} ms, p95 {f['p95_ms']:.1f} ms",
        )
        for m, f in figures.items()
    ]
    rows.append(
        ("sync / async throughput", f"{figures[sync.id]['requests_per_s'] / figures[async_.id]['requests_per_s']:.2f}x")
    )
    print_table(f"住民記録 writes through the gateway, {args.requests} requests, {args.clients} clients", rows)
    print(f"results: {save('jumin_writes', {'requests': args.requests, 'clients': args.clients, **figures})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
