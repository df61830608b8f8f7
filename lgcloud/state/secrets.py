"""The stack's passwords, generated once and kept in its state directory (mode 0600).

They reach the VMs only through ansible-runner's extravars file and the drills' stdin: never a
command line, a label or a container's environment."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import EXIT_BAD_INPUT, OperatorError
from .directory import state_dir, write_atomic

__all__ = ["StackSecrets", "stack_secrets"]

# What a configured lab's databases were set up with: lost, they cannot be made again.
_ESTABLISHED = ("postgresql_replication_password", "jumin_db_password")
# Added since: generated when missing, even under a configured lab (what they protect is new).
_ADDED = ("linkage_secret",)
_KEYS = _ESTABLISHED + _ADDED


@dataclass(frozen=True)
class StackSecrets:
    postgresql_replication_password: str
    jumin_db_password: str
    # Derives each body's 番号連携 request key and its 中間サーバー database password, so that a
    # municipality added later has its own without a new secret.
    linkage_secret: str

    def linkage(self, purpose: str, code: str) -> str:
        """The secret of one body (地方公共団体コード) for one purpose, e.g. ("request", "012025")."""
        return hmac.new(self.linkage_secret.encode(), f"{purpose}:{code}".encode(), hashlib.sha256).hexdigest()

    def as_extravars(self, codes: Iterable[str]) -> dict[str, object]:
        """The variables the roles read them by; `codes`: the stack's municipalities."""
        codes = list(codes)
        return {
            **{key: getattr(self, key) for key in _KEYS if key != "linkage_secret"},
            "linkage_request_keys": {code: self.linkage("request", code) for code in codes},
            "chukan_db_passwords": {code: self.linkage("chukan-db", code) for code in codes},
        }


def stack_secrets(stack: str) -> StackSecrets:
    """The stack's passwords; those missing are generated and the file rewritten whole, unless the
    lab was configured with them already (its databases and replicas would no longer match)."""
    directory = state_dir(stack)
    path = directory / "secrets.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if any(key not in known for key in _KEYS):
        if any(key not in known for key in _ESTABLISHED) and (directory / "facts.json").exists():
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
