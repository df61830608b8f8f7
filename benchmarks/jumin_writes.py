"""住民記録 writes from an office: HTTPS with the office's certificate and a signed-in clerk, against
the plain HTTP the front spoke before (no certificate, no sign-in, no アクセス記録).

    .venv/bin/python benchmarks/jumin_writes.py [--stack dev] [--baseline e26b6d8] [--requests 300]
        [--clients 4] [--rounds 3] [--no-baseline]

Secured: Ａ市's terminal (synchronous replication) and Ｃ村's (asynchronous) register residents on
the running lab by their service name, over TLS with the office's certificate and the drills'
clerk's session, one new connection per request (a full handshake every time: the costliest way a
client can talk to the front). Baseline: the same load over plain HTTP on a throwaway copy of the
stack (`benchplain`, 10.114/16) brought up from a git worktree of the commit given, with the image
built from that commit, then removed with its data. Rounds alternate between the two labs, so both
see the same machine. Also: TLS handshakes per second at the gateway (from Ａ市's terminal, each a
full handshake with the client certificate, then close).

The load runs inside the terminal VMs, bounded in count, against the lab's own gateways only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import latency_figures, latency_text, load_script, print_table, save

from lgcloud.model.config import load_stack
from lgcloud.model.naming import OFFICE_TLS
from lgcloud.ops.access import ssh_config_path
from lgcloud.ops.clerks import sign_in
from lgcloud.ops.lab import Lab
from lgcloud.paths import PROJECT_ROOT

BASELINE = "e26b6d8"  # the last commit before the front spoke TLS and clerks signed in
BASELINE_STACK = "benchplain"
BASE_IMAGE = "lgcloud/base:bookworm"  # images/build.sh's debootstrap rootfs
SESSION = "/run/lgcloud-bench.session"
_signed_in: set[tuple[str, str]] = set()

# Runs on a terminal: `clients` threads share `total` registrations; prints the latencies.
# Over TLS when a CA, certificate and key are given, with the session token of the file named.
LOAD = load_script(r"""
import json, ssl, sys, urllib.request
url, total, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
headers, context = {"Content-Type": "application/json"}, None
if len(sys.argv) > 4:
    context = ssl.create_default_context(cafile=sys.argv[4])
    context.load_cert_chain(sys.argv[5], sys.argv[6])
    with open(sys.argv[7]) as session:
        headers["Authorization"] = "Bearer " + session.read().strip()
def registration(i):
    body = json.dumps({"name": f"負荷 {i}", "kana": "フカ", "birth_date": "1980-01-01", "sex": "女",
                       "address": "本町1-1", "event": "move-in", "event_date": "2026-11-01"}).encode()
    return urllib.request.Request(url, body, headers)
timed_requests(registration, total, clients, status=201, context=context)
""")

# Runs on a terminal: full TLS handshakes (client certificate included) for `seconds`, `clients` at a time.
HANDSHAKES = r"""
import json, socket, ssl, sys, time
from concurrent.futures import ThreadPoolExecutor
name, seconds, clients = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
context = ssl.create_default_context(cafile=sys.argv[4])
context.load_cert_chain(sys.argv[5], sys.argv[6])
def shake(_):
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.create_connection((name, 443), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=name):
                done += 1
    return done
started = time.perf_counter()
with ThreadPoolExecutor(clients) as pool:
    total = sum(pool.map(shake, range(clients)))
print(json.dumps({"handshakes": total, "seconds": time.perf_counter() - started}))
"""


def _on_terminal(ssh_config: Path, municipality: str, script: str, *args: str) -> dict:
    result = subprocess.run(
        ["ssh", "-F", str(ssh_config), f"{municipality}-terminal", "python3", "-", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise SystemExit(f"load from {municipality}-terminal failed:\n{result.stderr[-2000:]}")
    data: dict = json.loads(result.stdout)
    return data


def measure(stack: str, municipality: str, total: int, clients: int) -> dict:
    """Registrations on the running lab as a signed-in clerk over TLS: requests/s, p50 and p95."""
    with Lab(load_stack(stack)) as lab:
        pair = lab.pair(municipality)
        if (stack, municipality) not in _signed_in:  # once per run: a clerk signs in in the morning
            lab.run(pair.terminal, f"umask 077 && cat > {SESSION}", stdin=sign_in(lab, municipality).token)
            _signed_in.add((stack, municipality))
    tls = (OFFICE_TLS["ca"], OFFICE_TLS["certificate"], OFFICE_TLS["key"], SESSION)
    url = f"{pair.url}/api/residents"
    data = _on_terminal(ssh_config_path(stack), municipality, LOAD, url, str(total), str(clients), *tls)
    return latency_figures(total, data)


def measure_plain(ssh_config: Path, municipality: str, total: int, clients: int) -> dict:
    """Registrations over plain HTTP with no session, on a lab from before TLS and sign-in."""
    url = f"http://jumin.{municipality}.lgwan.test/api/residents"
    return latency_figures(total, _on_terminal(ssh_config, municipality, LOAD, url, str(total), str(clients)))


def handshakes(stack: str, municipality: str, seconds: float, clients: int) -> float:
    name = f"jumin.{municipality}.lgwan.test"
    tls = (OFFICE_TLS["ca"], OFFICE_TLS["certificate"], OFFICE_TLS["key"])
    data = _on_terminal(ssh_config_path(stack), municipality, HANDSHAKES, name, str(seconds), str(clients), *tls)
    return float(data["handshakes"] / data["seconds"])


def _cli(cwd: Path, *args: str, timeout: float = 1800) -> None:
    # `python -m` from the worktree: its own lgcloud package, roles and state directory.
    result = subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        output = f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        raise SystemExit(f"`lgcloud {' '.join(args)}` in {cwd} failed:\n{output}")


@contextmanager
def baseline_lab(revision: str) -> Iterator[Path]:
    """A copy of dev at `revision` on 10.114/16, up and configured; its ssh_config. Removed after."""
    tree = Path(tempfile.mkdtemp(prefix="lgcloud-baseline-")) / "tree"
    subprocess.run(["git", "-C", str(PROJECT_ROOT), "worktree", "add", "--detach", str(tree), revision], check=True)
    image = f"lgcloud/vm:baseline-{revision}"
    config = tree / "stacks" / f"Pulumi.{BASELINE_STACK}.yaml"
    try:
        subprocess.run(
            ["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", image, str(tree / "images/vm")],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        text = (tree / "stacks" / "Pulumi.dev.yaml").read_text().replace("10.100.", "10.114.")
        config.write_text(text.replace("config:\n", f"config:\n  lgcloud:image: {image}\n", 1))
        _cli(tree, "up", "--file", str(config))
        _cli(tree, "configure", "--file", str(config))
        yield tree / ".lgcloud" / BASELINE_STACK / "ssh_config"
    finally:
        _cli(tree, "down", "--file", str(config), "--delete-data")
        subprocess.run(["git", "-C", str(PROJECT_ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        subprocess.run(["docker", "rmi", image], capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--baseline", default=BASELINE, help="the commit of the plain-HTTP front")
    parser.add_argument("--no-baseline", action="store_true", help="measure the running lab only")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    cfg = load_stack(args.stack)
    offices = [next(m for m in cfg.municipalities if m.replication == kind) for kind in ("sync", "async")]
    runs: dict[str, list[dict]] = {f"{m.id} {kind}": [] for m in offices for kind in ("tls", "plain")}
    with baseline_lab(args.baseline) if not args.no_baseline else _nothing() as plain_config:
        for _ in range(args.rounds):
            for m in offices:
                if plain_config is not None:
                    runs[f"{m.id} plain"].append(measure_plain(plain_config, m.id, args.requests, args.clients))
                runs[f"{m.id} tls"].append(measure(args.stack, m.id, args.requests, args.clients))
    rate = handshakes(args.stack, offices[0].id, 20, args.clients)
    figures = {
        name: {key: statistics.median(r[key] for r in found) for key in found[0]}
        for name, found in runs.items()
        if found
    }
    rows = [(name, latency_text(f)) for name, f in figures.items()]
    for m in offices:
        if f"{m.id} plain" in figures:
            tls, plain = figures[f"{m.id} tls"], figures[f"{m.id} plain"]
            cost = 1 - tls["requests_per_s"] / plain["requests_per_s"]
            rows.append((f"{m.id} ({m.replication}): security's cost", f"{cost:.0%} of throughput (target ≤ 15 %)"))
    shaken = f"{rate:.0f}/s from {offices[0].id}'s terminal, {args.clients} clients"
    rows.append(("TLS handshakes at the gateway", shaken))
    print_table(
        f"住民記録 writes, {args.requests} requests × {args.rounds} rounds, {args.clients} clients (medians)", rows
    )
    saved = {"requests": args.requests, "clients": args.clients, "rounds": args.rounds, "baseline": args.baseline}
    print(f"results: {save('jumin_writes', {**saved, **figures, 'handshakes_per_s': rate})}")
    return 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    sys.exit(main())
