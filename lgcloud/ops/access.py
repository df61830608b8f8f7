"""How operators and tools reach the VMs: an ssh_config per stack, written at every `up`.

ssh -F .lgcloud/dev/ssh_config a-city-app
"""

from __future__ import annotations

import io
import os
import re
import socket
import stat
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

__all__ = [
    "Reached",
    "VmAccess",
    "reach_and_pin",
    "read_host_key",
    "ssh_config_path",
    "wait_for_ssh",
    "write_ssh_config",
]

# Banner waits are sockets sleeping, key reads a file each: enough threads to have every
# VM of a large stack in flight; the VMs' sshd and the engine, not this process, set the pace.
REACH_THREADS = 64
BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


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


def read_host_key(engine: docker.DockerClient, vm: VmAccess) -> PinnedKey | None:
    """The VM's host key as its disk holds it, read through the hypervisor (None: it never booted).

    A running VM of this machine's engine is read through its first process's root in /proc (the
    engine serves archive reads one at a time: 15 s for 159 VMs on a loaded lab, against 0.4 s);
    any other through the engine's archive API."""
    try:
        content = _key_through_proc(engine, vm) if vm.endpoint is None else None
        if content is None:
            content = archived_file(engine.api, vm.container, HOST_KEY) or b""
        kind, key = content.decode().split()[:2]
    except (docker.errors.NotFound, ValueError):
        return None
    if kind != "ssh-ed25519" or not BASE64.fullmatch(key):
        return None  # not a key: nothing is pinned, and no SSH reaches the VM
    return PinnedKey(vm.name, vm.mgmt, kind, key)


def archived_file(api: docker.APIClient, container: str, path: str) -> bytes | None:
    """A file of the container's disk through the engine's archive API (works while it is off);
    None when the path is not a plain file. A link is not followed: a VM's link could name any path."""
    stream, _ = api.get_archive(container, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        extracted = tar.extractfile(member) if member and member.isfile() else None
        return extracted.read() if extracted else None


def _key_through_proc(engine: docker.DockerClient, vm: VmAccess) -> bytes | None:
    """The host key file from /proc/<pid>/root of the VM's first process; None when it is not
    running or the file is not a plain file there. The VM's root is hostile: every component of
    the path is opened without following a link, or a link such as /etc/ssh -> /../.. placed
    inside the VM would make this host read its own files."""
    state = engine.api.inspect_container(vm.container)
    pid, container_id = state["State"].get("Pid") or 0, state["Id"]
    if not pid:
        return None
    descriptors: list[int] = []
    try:
        if container_id not in Path(f"/proc/{pid}/cgroup").read_text():
            return None  # the process is gone and its number another's
        directory = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
        descriptors.append(directory)
        *parents, name = HOST_KEY.strip("/").split("/")
        for part in parents:
            directory = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            descriptors.append(directory)
        descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
        descriptors.append(descriptor)
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        return os.read(descriptor, 4096)
    except OSError:
        return None
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


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
        return True, read_host_key(engines[vm.endpoint], vm)

    with ThreadPoolExecutor(REACH_THREADS) as pool:
        reached = list(pool.map(reach, vms))
    silent = [vm.name for vm, (answered, _) in zip(vms, reached) if not answered]
    if silent:
        return Reached(silent, 0)
    keys = [key for _, key in reached if key is not None]
    gone = {vm for vm in pinned_host_keys(stack) if vm not in known}
    pin_host_keys(stack, keys, forget=gone)
    return Reached([], len(keys))
