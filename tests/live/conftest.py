"""The running `dev` lab: brought up once per session (a no-op when it is already up).

Tests pick their VMs by the groups of the inventory ``lgcloud configure`` generates
(``@pytest.mark.hosts("role_db", "role_db_replica")`` parametrizes `name`), and their
municipalities from the stack (``@pytest.mark.municipalities`` parametrizes `m`;
``municipalities(pairs=True)`` every ordered pair as `office`, `other`). Both are read when the
tests are collected, never when a module is imported."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from functools import cache
from typing import Any

import pytest
import testinfra

from lgcloud.model.config import load_stack
from lgcloud.model.topology import plan
from lgcloud.ops.access import ssh_config_path
from lgcloud.ops.inventory import build_inventory
from lgcloud.state.directory import state_dir
from lgcloud.state.hostkeys import pinned_host_keys
from lgcloud.state.keys import has_keypair

STACK = "dev"

# Asks, from inside a VM, which (address, port) pairs accept a TCP connection within a second.
PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def reach(target):
    try:
        socket.create_connection((target[0], target[1]), timeout=1.0).close()
        return True
    except OSError:
        return False
targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(32) as pool:
    print(json.dumps(dict(zip([f"{a}:{p}" for a, p in targets], pool.map(reach, targets)))))
"""


# Asks, from inside a VM, which addresses answer an ICMP echo (an unprivileged ICMP socket: no
# NET_RAW needed) and which a UDP datagram to port 9, where nothing listens: the answer is the ICMP
# "port unreachable" that a filtered address never sends back.
DATAGRAM_PROBE = """
import json, socket, struct, sys
from concurrent.futures import ThreadPoolExecutor
def icmp(address):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) as s:
        s.settimeout(1.0)
        try:
            s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"lgcloud", (address, 0))
            return s.recvfrom(64)[0][0] == 0
        except OSError:
            return False
def udp(address):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        try:
            s.connect((address, 9))
            s.send(b"lgcloud")
            s.recv(64)
            return True
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
addresses = json.loads(sys.argv[1])
with ThreadPoolExecutor(32) as pool:
    found = {name: dict(zip(addresses, pool.map(test, addresses))) for name, test in (("icmp", icmp), ("udp", udp))}
print(json.dumps(found))
"""


@cache
def inventory() -> dict[str, Any]:
    """The dev lab's inventory as `lgcloud configure` generates it, every VM of the plan in it."""
    return build_inventory(load_stack(STACK), state_dir(STACK) / "id_ed25519")["all"]


def group(name: str) -> list[str]:
    """The VMs of an inventory group (`all`, `role_db`, `site_backup`, `municipality_a_city`, …)."""
    hosts = inventory()["hosts"] if name == "all" else inventory()["children"][name]["hosts"]
    return sorted(hosts)


def hostvars(name: str) -> dict[str, Any]:
    return inventory()["hosts"][name]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    hosts = metafunc.definition.get_closest_marker("hosts")
    if hosts:
        metafunc.parametrize("name", sorted({h for g in hosts.args for h in group(g)}))
    chosen = metafunc.definition.get_closest_marker("municipalities")
    if chosen:
        municipalities = load_stack(STACK).municipalities
        if chosen.kwargs.get("pairs"):
            pairs = list(itertools.permutations(municipalities, 2))
            metafunc.parametrize(("office", "other"), pairs, ids=[f"{a.id}-asks-{b.id}" for a, b in pairs])
        else:
            metafunc.parametrize("m", municipalities, ids=[m.id for m in municipalities])


@pytest.fixture(scope="session")
def lab(dev):
    """Bring `dev` up (idempotent) and return its topology. A `dev` lab this checkout holds no key
    for (left on the machine by an earlier clone, as on a CI runner) is removed first, its data
    with it: `up` refuses to take it over, and nothing of it could be reached."""
    if not has_keypair(STACK):
        subprocess.run(
            [sys.executable, "-m", "lgcloud.cli", "down", "--stack", STACK, "--delete-data"],
            check=True,
            timeout=300,
        )
    result = subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", "up", "--stack", STACK, "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"lgcloud up failed:\n{result.stderr}"
    return plan(dev)


def run_configure(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`lgcloud configure --stack dev` with `args`, whatever its exit: for tests that expect a refusal."""
    return subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", "configure", "--stack", STACK, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def configure(*args: str) -> dict:
    """Run `lgcloud configure` on the dev lab; return its per-host JSON report."""
    result = run_configure("--json", *args)
    assert result.returncode == 0, f"lgcloud configure failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def configured(lab):
    """The lab after one `lgcloud configure --full`: every role applied, on every VM."""
    return configure("--full")


@cache
def _host(name: str):
    """Checked against the key `up` pinned before any command is sent (testinfra's paramiko backend
    reads no known_hosts of the ssh_config's)."""
    host = testinfra.get_host(f"paramiko://{name}", ssh_config=str(ssh_config_path(STACK)))
    offered = host.backend.client.get_transport().get_remote_server_key()
    pinned = pinned_host_keys(STACK).get(name)
    assert pinned is not None, f"{name}: no host key pinned; run `lgcloud up --stack {STACK}`"
    assert (offered.get_name(), offered.get_base64()) == (pinned.kind, pinned.key), f"{name}: not the pinned host key"
    return host


@pytest.fixture(scope="session")
def vm(lab):
    """A testinfra host for a VM of the lab, over SSH on the mgmt segment (paramiko)."""
    return _host


def probe(host, targets: list[tuple[str, int]]) -> dict[str, bool]:
    """From `host`, try each (address, port); True where a connection was accepted."""
    output = host.check_output("python3 -c %s %s", PROBE, json.dumps(targets))
    return json.loads(output)


def probe_datagrams(host, addresses: list[str]) -> dict[str, dict[str, bool]]:
    """From `host`, ICMP echo and UDP to each address: {"icmp": {address: answered}, "udp": …}."""
    output = host.check_output("python3 -c %s %s", DATAGRAM_PROBE, json.dumps(addresses))
    return json.loads(output)
