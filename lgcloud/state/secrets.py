"""The stack's passwords, generated once and kept in its state directory (mode 0600).

They reach the VMs only through ansible-runner's extravars file and the drills' stdin: never a
command line, a label or a container's environment."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from ..errors import EXIT_BAD_INPUT, OperatorError
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
    """The stack's passwords; those missing are generated and the file rewritten whole, unless the
    lab was configured with them already (its databases and replicas would no longer match)."""
    directory = state_dir(stack)
    path = directory / "secrets.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if any(key not in known for key in _KEYS):
        if (directory / "facts.json").exists():
            raise OperatorError(
                f"stack {stack} was configured, but {path} is missing or incomplete: new passwords would lock "
                "the replicas and applications out of the databases set up with the old ones",
                f"put back {path} from where it was copied; to start the lab afresh instead, "
                f"`lgcloud down --stack {stack} --delete-data` (deletes its data) and remove {directory}",
                EXIT_BAD_INPUT,
            )
        known = {**{key: secrets.token_urlsafe(24) for key in _KEYS}, **known}
        write_atomic(path, json.dumps(known, indent=2), 0o600)
    return StackSecrets(**{key: known[key] for key in _KEYS})
