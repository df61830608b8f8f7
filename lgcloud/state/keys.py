"""The SSH key pair of a stack, generated on first use and kept out of git::

ensure_keypair("dev").private   # .lgcloud/dev/id_ed25519, mode 0600
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .directory import state_dir, write_atomic

__all__ = ["KeyPair", "ensure_keypair", "fingerprint", "has_keypair"]


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path

    @property
    def public_text(self) -> str:
        return self.public.read_text(encoding="ascii").strip()


def fingerprint(public_text: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line, without padding (a label's value).

    >>> fingerprint("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3kIb4XqXP2NeQXBgFIb9aDBLiexGgrHZJmDnDKvlWv lgcloud-dev")
    'SHA256-vsa15z5ThLJL6DgE-f0Pwb5OdYV_VouAux6hjwZfzkY'
    """
    blob = base64.b64decode(public_text.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return "SHA256-" + digest.replace("+", "-").replace("/", "_")


def has_keypair(stack: str) -> bool:
    """Whether the stack's key pair exists already (the VMs of a lab trust only it)."""
    return (state_dir(stack) / "id_ed25519").exists()


def ensure_keypair(stack: str) -> KeyPair:
    """Return the stack's key pair, creating it when it does not exist yet."""
    directory = state_dir(stack)
    pair = KeyPair(directory / "id_ed25519", directory / "id_ed25519.pub")
    if pair.private.exists() and pair.public.exists():
        return pair
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    # The private half first: a public key without its private half would be regenerated anyway.
    write_atomic(pair.private, private, 0o600)
    write_atomic(pair.public, public + f" lgcloud-{stack}\n".encode(), 0o644)
    return pair
