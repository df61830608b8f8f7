"""The SSH host key of every VM, read through the hypervisor at `up` and pinned here.

Nothing that talks SSH to a VM (ssh with the stack's ssh_config, the drills and backups, Ansible,
the tests) accepts another key: a machine that takes a VM's mgmt address is not sent what
`configure` sends. The file is OpenSSH's known_hosts format, one line per VM, keyed by its name
and its mgmt address::

    a-city-db,10.100.0.10 ssh-ed25519 AAAAC3Nza…
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

from .directory import state_dir, write_atomic

__all__ = ["HOST_KEY", "PinnedKey", "another_key", "known_hosts_path", "pin_host_keys", "pinned_host_keys"]

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"  # the one type pinned; clients then ask for it first


@dataclass(frozen=True)
class PinnedKey:
    vm: str
    address: str
    kind: str  # "ssh-ed25519"
    key: str  # base64

    def line(self) -> str:
        return f"{self.vm},{self.address} {self.kind} {self.key}"


def known_hosts_path(stack: str) -> Path:
    return state_dir(stack) / "known_hosts"


def another_key(stack: str, vm: str, address: str) -> str:
    """What every client says when the machine at a VM's address shows another key than the pinned one."""
    return (
        f"{vm}: the machine at {address} shows another SSH host key than the one pinned in "
        f"{known_hosts_path(stack)}; nothing was sent to it. If {vm} was remade outside lgcloud, "
        f"`lgcloud up --stack {stack}` pins its key again"
    )


def pinned_host_keys(stack: str) -> dict[str, PinnedKey]:
    """The pinned keys by VM name (none before the first `up`)."""
    path = known_hosts_path(stack)
    if not path.exists():
        return {}
    keys = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        names, kind, key = line.split()[:3]
        vm, _, address = names.partition(",")
        keys[vm] = PinnedKey(vm, address, kind, key)
    return keys


def pin_host_keys(stack: str, keys: list[PinnedKey], forget: Set[str] = frozenset()) -> Path:
    """Pin `keys` (replacing those of the same VMs), drop the VMs in `forget`, keep the others."""
    kept = {vm: k for vm, k in pinned_host_keys(stack).items() if vm not in forget}
    kept.update({k.vm: k for k in keys})
    text = "".join(f"{kept[vm].line()}\n" for vm in sorted(kept))
    path = known_hosts_path(stack)
    write_atomic(path, text, 0o644)
    return path
