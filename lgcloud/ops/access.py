"""How operators and tools reach the VMs: an ssh_config per stack, written at every `up`.

ssh -F .lgcloud/dev/ssh_config a-city-app
"""

from __future__ import annotations

from pathlib import Path

from ..model.naming import segment_resource
from ..state.directory import state_dir
from ..state.hostkeys import known_hosts_path
from ..state.keys import ensure_keypair

__all__ = ["ssh_config_path", "wait_for_ssh", "write_ssh_config"]


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


def wait_for_ssh(addresses: dict[str, str], timeout: float = 60.0) -> list[str]:
    """Wait until each VM's sshd sends its banner; return the names still silent at `timeout`."""
    import socket
    import time
    from concurrent.futures import ThreadPoolExecutor

    deadline = time.monotonic() + timeout

    def answers(address: str) -> bool:
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

    with ThreadPoolExecutor(16) as pool:
        ready = dict(zip(addresses, pool.map(answers, addresses.values())))
    return [name for name, ok in ready.items() if not ok]
