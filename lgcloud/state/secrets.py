"""The stack's passwords, generated once and kept in its state directory (mode 0600).

They reach the VMs only through ansible-runner's extravars file and the drills' stdin: never a
command line, a label or a container's environment."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from .directory import state_dir, write_atomic

__all__ = ["StackSecrets", "stack_secrets"]

_KEYS = ("postgresql_replication_password", "jumin_db_password")


@dataclass(frozen=True)
class StackSecrets:
    postgresql_replication_password: str
    jumin_db_password: str

    def as_extravars(self) -> dict[str, str]:
        """The variables the roles read them by."""
        return {key: getattr(self, key) for key in _KEYS}


def stack_secrets(stack: str) -> StackSecrets:
    """The stack's passwords; those missing are generated and the file rewritten whole."""
    path = state_dir(stack) / "secrets.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if any(key not in known for key in _KEYS):
        known = {**{key: secrets.token_urlsafe(24) for key in _KEYS}, **known}
        write_atomic(path, json.dumps(known, indent=2), 0o600)
    return StackSecrets(**{key: known[key] for key in _KEYS})
