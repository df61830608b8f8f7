"""How operators and tools reach the VMs: an ssh_config per stack, written at every `up`.

ssh -F .lgcloud/dev/ssh_config a-city-app
"""

from __future__ import annotations

import io
import socket
import tarfile
import time
from collections.abc import Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker

from ..engine.realise import connect
from ..model.naming import segment_resource
from ..state.directory import state_dir
from ..state.hostkeys import HOST_KEY, PinnedKey, known_hosts_path, pin_host_keys, pinned_host_keys
from ..state.keys import ensure_keypair

__all__ = ["VmAccess", "Reached", "reach_and_pin", "ssh_config_path", "wait_for_ssh", "write_ssh_config"]

# Banner waits are sockets sleeping, key reads one archive call each: enough threads to have every
# VM of a large stack in flight; the VMs' sshd and the engine, not this process, set the pace.
REACH_THREADS = 64


def ssh_config_path(stack: str) -> Path:
    return state_dir(stack) / "ssh_config"


def write_ssh_config(stack: str, vms: dict[str, dict]) -> Path:
    """One Host entry per VM, reached on its mgmt address with the stack's key."""
    key = ensure_keypair(stack).private
    mgmt = segment_resource(stack, "mgmt")
    known_hosts = known_hosts_path(stack)
    lines = [f"# Written by `lgcloud up --stack {stack}`; host keys are those `up` read from the VMs' disks."]
    for name, vm in sorted(vms.items()):
        address = vm["addresses"].get(mgmt)
        if not address:
            continue
        lines += [
            f"Host {name}",
            f"    HostName {address}",
            "    User root",
            f"    IdentityFile {key}",
            "    IdentitiesOnly yes",
            "    StrictHostKeyChecking yes",
            f"    UserKnownHostsFile {known_hosts}",
            "    GlobalKnownHostsFile /dev/null",
            "    HostKeyAlgorithms ssh-ed25519",
            "    LogLevel ERROR",
            "    ConnectTimeout 5",
            "",
        ]
    path = ssh_config_path(stack)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _answers(address: str, deadline: float) -> bool:
    """Whether the sshd at `address` sends its banner before `deadline`."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, 22), timeout=2) as conn:
                conn.settimeout(2)
                if conn.recv(8).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def wait_for_ssh(addresses: dict[str, str], timeout: float = 60.0) -> list[str]:
    """Wait until each VM's sshd sends its banner; return the names still silent at `timeout`."""
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(REACH_THREADS) as pool:
        ready = dict(zip(addresses, pool.map(lambda address: _answers(address, deadline), addresses.values())))
    return [name for name, ok in ready.items() if not ok]


@dataclass(frozen=True)
class VmAccess:
    """How `up` reaches a VM: its sshd on mgmt, its disk through its site's engine."""

    name: str
    mgmt: str
    container: str
    endpoint: str | None  # the site's Docker endpoint (None: the local engine)
    boots: bool = True  # False: kept off (fenced by a failover); no sshd is waited for


@dataclass(frozen=True)
class Reached:
    silent: list[str]  # VMs whose sshd did not answer in time (nothing is pinned then)
    pinned: int  # host keys pinned


def _host_key(engine: docker.DockerClient, vm: VmAccess) -> PinnedKey | None:
    """The VM's host key as its disk holds it, read through the hypervisor (None: it never booted)."""
    try:
        stream, _ = engine.api.get_archive(vm.container, HOST_KEY)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            content = tar.extractfile(member) if member else None
            kind, key = (content.read() if content else b"").decode().split()[:2]
    except (docker.errors.NotFound, ValueError):
        return None
    return PinnedKey(vm.name, vm.mgmt, kind, key)


def reach_and_pin(stack: str, vms: list[VmAccess], known: Set[str], timeout: float = 60.0) -> Reached:
    """Wait until each booting VM's sshd sends its banner, reading its host key from its disk as
    soon as it does (vm-init writes the key before sshd starts), so the reads overlap the VMs still
    booting; then pin them all in one write, dropping pins of VMs not in `known`.

    A VM kept off has its key read if it booted before, and is not waited for."""
    deadline = time.monotonic() + timeout
    engines = {endpoint: connect(endpoint) for endpoint in {vm.endpoint for vm in vms}}

    def reach(vm: VmAccess) -> tuple[bool, PinnedKey | None]:
        if vm.boots and not _answers(vm.mgmt, deadline):
            return False, None
        return True, _host_key(engines[vm.endpoint], vm)

    with ThreadPoolExecutor(REACH_THREADS) as pool:
        reached = list(pool.map(reach, vms))
    silent = [vm.name for vm, (answered, _) in zip(vms, reached) if not answered]
    if silent:
        return Reached(silent, 0)
    keys = [key for _, key in reached if key is not None]
    gone = {vm for vm in pinned_host_keys(stack) if vm not in known}
    pin_host_keys(stack, keys, forget=gone)
    return Reached([], len(keys))
