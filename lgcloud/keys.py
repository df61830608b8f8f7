"""The SSH key pair of a stack, generated on first use and kept out of git.

>>> key = ensure_keypair("dev")            # doctest: +SKIP
>>> key.private.name
'id_ed25519'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .config import PROJECT_ROOT

__all__ = ["KeyPair", "ensure_keypair", "state_dir"]


def state_dir(stack: str, root: Path = PROJECT_ROOT) -> Path:
    """Where a stack keeps what must not be in git (keys, secrets, run artifacts)."""
    path = root / ".lgcloud" / stack
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path

    @property
    def public_text(self) -> str:
        return self.public.read_text(encoding="ascii").strip()


def ensure_keypair(stack: str, root: Path = PROJECT_ROOT) -> KeyPair:
    """Return the stack's key pair, creating it when it does not exist yet."""
    directory = state_dir(stack, root)
    pair = KeyPair(directory / "id_ed25519", directory / "id_ed25519.pub")
    if pair.private.exists() and pair.public.exists():
        return pair
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    # Write to temporary names first so an interrupted run never leaves half a pair.
    tmp_private = pair.private.with_name(pair.private.name + ".tmp")
    tmp_public = pair.public.with_name(pair.public.name + ".tmp")
    fd = os.open(tmp_private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    tmp_public.write_bytes(public + f" lgcloud-{stack}\n".encode())
    os.replace(tmp_private, pair.private)
    os.replace(tmp_public, pair.public)
    return pair
