"""The clerks lgcloud provides in each municipality's 住民記録: the first 管理者, who creates every
other account, and the 窓口 clerk the drills and tests sign in as. Generated once and kept in the
stack's state directory (``clerks.json``, mode 0600): 職員ID, password and TOTP secret. The
databases receive the password only as its scrypt hash.

    >>> verify_password(hash_password("correct horse"), "correct horse")
    True
    >>> verify_password(hash_password("correct horse"), "wrong horse")
    False
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

import pyotp

from .directory import file_lock, state_dir, write_atomic

__all__ = [
    "ADMINISTRATOR",
    "DRILL_CLERK",
    "ClerkAccount",
    "PROVIDED",
    "first_clerks",
    "new_account",
    "keep_provided",
    "hash_password",
    "provided_clerk",
    "verify_password",
]

# 職員ID of the accounts lgcloud creates, the same in every municipality.
ADMINISTRATOR = "kanri01"
DRILL_CLERK = "kunren01"
# scrypt's cost: 16 MiB and about 50 ms a hash on one of the lab's cores. The apps (business_app.py)
# read the parameters from the hash, so raising them here needs no change there.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$key``, salt and key base64: the form staff.clerks.password holds."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    encoded = (base64.b64encode(part).decode() for part in (salt, key))
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), *encoded))


def verify_password(stored: str, password: str) -> bool:
    # The apps' password_matches (roles/jumin/files/business_app.py) reads the same form: the VM
    # has no lgcloud package, and tests/live/test_clerks.py proves the two agree.
    try:
        method, n, r, p, salt, key = stored.split("$")
        derived = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
        return method == "scrypt" and hmac.compare_digest(derived, base64.b64decode(key))
    except ValueError:  # binascii.Error is one too
        return False


@dataclass(frozen=True)
class ClerkAccount:
    clerk_id: str
    name: str
    role: str  # 窓口 or 管理者
    password: str
    password_hash: str
    totp_secret: str

    def step(self, at: float | None = None) -> int:
        """The TOTP time step at `at` (now by default)."""
        return int(at if at is not None else time.time()) // pyotp.TOTP(self.totp_secret).interval

    def code(self, step: int) -> str:
        """The one-time code of a time step, as the clerk's authenticator shows it."""
        return pyotp.TOTP(self.totp_secret).generate_otp(step)

    def totp_uri(self, issuer: str) -> str:
        """The secret as an authenticator app takes it (``otpauth://totp/…``)."""
        return pyotp.TOTP(self.totp_secret).provisioning_uri(name=self.clerk_id, issuer_name=issuer)

    def as_first_clerk(self) -> dict[str, str]:
        """What the database is given: the hash, never the password."""
        return {
            "clerk_id": self.clerk_id,
            "name": self.name,
            "role": self.role,
            "password": self.password_hash,
            "totp_secret": self.totp_secret,
        }


_PROVIDED = ((ADMINISTRATOR, "管理者（lgcloud）", "管理者"), (DRILL_CLERK, "訓練用窓口（lgcloud）", "窓口"))
PROVIDED = tuple(clerk_id for clerk_id, _, _ in _PROVIDED)


def new_account(clerk_id: str, name: str = "", role: str = "") -> ClerkAccount:
    """A fresh password and TOTP secret for `clerk_id`."""
    password = secrets.token_urlsafe(18)
    return ClerkAccount(clerk_id, name, role, password, hash_password(password), pyotp.random_base32())


def first_clerks(stack: str, municipalities: list[str]) -> dict[str, list[ClerkAccount]]:
    """Each municipality's provided accounts; those missing are generated and the file rewritten."""
    path = state_dir(stack) / "clerks.json"
    with file_lock(state_dir(stack) / ".clerks.lock"):
        known = json.loads(path.read_text()) if path.exists() else {}
        missing = [(m, p) for m in municipalities for p in _PROVIDED if p[0] not in known.get(m, {})]
        for municipality, provided in missing:
            known.setdefault(municipality, {})[provided[0]] = asdict(new_account(*provided))
        if missing:
            write_atomic(path, json.dumps(known, indent=2, ensure_ascii=False), 0o600)
    return {m: [ClerkAccount(**known[m][p[0]]) for p in _PROVIDED] for m in municipalities}


def provided_clerk(stack: str, municipality: str, clerk_id: str = DRILL_CLERK) -> ClerkAccount:
    """One provided account of a municipality (generated if it is not yet)."""
    accounts = first_clerks(stack, [municipality])[municipality]
    return next(a for a in accounts if a.clerk_id == clerk_id)


def keep_provided(stack: str, municipality: str, account: ClerkAccount) -> None:
    """Keep `account` in place of the provided account of the same 職員ID (after a reset)."""
    path = state_dir(stack) / "clerks.json"
    with file_lock(state_dir(stack) / ".clerks.lock"):
        known = json.loads(path.read_text()) if path.exists() else {}
        known.setdefault(municipality, {})[account.clerk_id] = asdict(account)
        write_atomic(path, json.dumps(known, indent=2, ensure_ascii=False), 0o600)
