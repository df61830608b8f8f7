"""What the last successful configure run left (``ansible/converged.json``): the digest of
everything it configured from, the container of each VM, and a digest of each VM's configured state.

A later run whose inputs and containers are the same skips the VMs whose state digest is unchanged
too (lgcloud.ops.configure). The record is forgotten as a run starts and written only when the run
succeeds, so a run that failed or was interrupted leaves none: the next one runs every VM.

    >>> Converged("abc", {"a-city-db": "c0ffee"}, {"a-city-db": "d1gest"}).matches("abc", {"a-city-db": "c0ffee"})
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from .directory import state_dir, write_atomic

__all__ = ["Converged", "converged", "forget_converged", "inputs_digest", "record_converged"]


@dataclass(frozen=True)
class Converged:
    inputs: str  # inputs_digest of the run
    containers: dict[str, str]  # VM name → container ID, every VM that ran then
    states: dict[str, str]  # VM name → its configured-state digest just after the run

    def matches(self, inputs: str, containers: Mapping[str, str]) -> bool:
        """Whether nothing the VMs are configured from changed, and no VM was made, remade or stopped."""
        return self.inputs == inputs and self.containers == dict(containers)


def _path(stack: str) -> Path:
    return state_dir(stack) / "ansible" / "converged.json"


def inputs_digest(documents: Iterable[str], code: Iterable[Path], settings: Mapping[str, str]) -> str:
    """One digest of a run's inputs: the inventory and extra vars as written, every file of the
    playbook, roles and modules, Ansible's settings, and the versions of Ansible and Mitogen."""
    digest = hashlib.sha256()
    for document in documents:
        digest.update(hashlib.sha256(document.encode()).digest())
    for path in sorted(code):
        digest.update(str(path).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps(dict(settings), sort_keys=True).encode())
    for package in ("ansible-core", "mitogen"):
        try:
            digest.update(f"{package}={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=none".encode())
    return digest.hexdigest()


def converged(stack: str) -> Converged | None:
    """The record of the last successful run; None when there is none or it cannot be read."""
    try:
        document = json.loads(_path(stack).read_text(encoding="utf-8"))
        return Converged(str(document["inputs"]), dict(document["containers"]), dict(document["states"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_converged(stack: str) -> None:
    _path(stack).unlink(missing_ok=True)


def record_converged(stack: str, record: Converged) -> None:
    path = _path(stack)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps(asdict(record), indent=1, sort_keys=True), 0o600)
