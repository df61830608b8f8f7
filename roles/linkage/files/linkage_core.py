"""番号連携's rules, shared by the broker (情報提供ネットワークシステム) and the 中間サーバー: Python's
standard library only, so that the VMs run it as it is and the controller's unit tests import it.

- A **符号** is the broker's token for one person at one body: an HMAC of the body's code and the
  person's 住民票コード under a key that never leaves the broker. Two bodies' 符号 of one person
  have nothing in common, and neither reveals the 住民票コード or the 個人番号.
- A **request** between a body and the broker carries its body's code, a timestamp and a nonce,
  and an HMAC of all that and the body under the body's own key: altered, replayed or stale, it is
  refused.
- **情報提供等記録** are a hash chain: each record is kept as its canonical JSON text, and its hash
  covers the previous hash and that text, so changing, removing or inserting one breaks every link
  after it (and a verifier hashes the stored text as it is, without reading it).

    >>> key = bytes(32)
    >>> a, b = fugo(key, "012025", "48213907715"), fugo(key, "013315", "48213907715")
    >>> len(a), a == b, "48213907715" in a
    (32, False, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "CARD_SERIAL",
    "CLOCK_SKEW",
    "FUGO",
    "GENESIS",
    "AnsweredLast",
    "Nonces",
    "REQUEST_ID",
    "RESIDENT_CODE",
    "Refused",
    "Signed",
    "canonical",
    "chain_hash",
    "first_broken",
    "fugo",
    "sign",
    "verify",
]

RESIDENT_CODE = re.compile(r"[0-9]{11}")
FUGO = re.compile(r"[A-Z2-7]{32}")  # what fugo() gives
REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # a UUID, as a requester draws it
CARD_SERIAL = re.compile(r"[0-9a-f]{1,40}")  # a 利用者証明用電子証明書's serial, lowercase hex
BODY_CODE = re.compile(r"[0-9]{6}")  # a 地方公共団体コード (or a national body's code of the same form)
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
CLOCK_SKEW = 60  # seconds a request's timestamp may differ from the receiver's clock
GENESIS = "0" * 64  # the hash before the first record


class AnsweredLast:
    """Per key, the one of its places (a database host, a 中間サーバー) that answered last, to be
    tried first the next time: after a failover, only the first call waits for the lost place.

    >>> seen = AnsweredLast()
    >>> seen.order("a-city", ["center", "backup"])
    ['center', 'backup']
    >>> seen.answered("a-city", "backup")
    >>> seen.order("a-city", ["center", "backup"])
    ['backup', 'center']
    """

    def __init__(self) -> None:
        self._last: dict[str, str] = {}  # one item set or read at a time: safe across threads

    def order(self, key: str, places: Iterable[str]) -> list[str]:
        return sorted(places, key=lambda place: place != self._last.get(key))

    def answered(self, key: str, place: str) -> None:
        self._last[key] = place


class Refused(Exception):
    """A request or record the rules refuse; the message says why (and never what was asked)."""


def fugo(key: bytes, body_code: str, resident_code: str) -> str:
    """The 符号 of the person with `resident_code` at the body `body_code` (32 base32 characters)."""
    if not BODY_CODE.fullmatch(body_code) or not RESIDENT_CODE.fullmatch(resident_code):
        raise Refused("a 符号 is derived from a 6-digit body code and an 11-digit 住民票コード")
    digest = hmac.new(key, f"{body_code}:{resident_code}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:20]).decode()


def canonical(value: object) -> str:
    """The one text of a record: what is stored, hashed and verified."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class Nonces:
    """The (body, nonce) pairs a receiver has seen within the clock skew, and when it started: a
    request signed before the receiver started is refused, so that a restart, which forgets the
    pairs, opens no window for a replay. Thread-safe."""

    def __init__(self, started: float | None = None):
        self.started = time.time() if started is None else started
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def admit(self, body_code: str, nonce: str, timestamp: int, now: float) -> None:
        if timestamp < int(self.started):
            raise Refused("the request was signed before the receiver started; sign it again")
        with self._lock:
            if (body_code, nonce) in self._seen:
                raise Refused("the request was seen before (a replay)")
            for pair, stamp in list(self._seen.items()):
                if stamp < now - 2 * CLOCK_SKEW:
                    del self._seen[pair]
            self._seen[(body_code, nonce)] = timestamp


@dataclass(frozen=True)
class Signed:
    """What travels with a request's body: who sends it, when, a nonce, and the MAC over them."""

    body_code: str
    timestamp: int
    nonce: str
    mac: str

    def headers(self) -> dict[str, str]:
        return {
            "X-Linkage-Body": self.body_code,
            "X-Linkage-Timestamp": str(self.timestamp),
            "X-Linkage-Nonce": self.nonce,
            "X-Linkage-Mac": self.mac,
        }


def _mac(key: bytes, body_code: str, timestamp: int, nonce: str, path: str, body: bytes) -> str:
    message = b"\n".join((body_code.encode(), str(timestamp).encode(), nonce.encode(), path.encode(), body))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(key: bytes, body_code: str, path: str, body: bytes, nonce: str, now: float | None = None) -> Signed:
    timestamp = int(time.time() if now is None else now)
    return Signed(body_code, timestamp, nonce, _mac(key, body_code, timestamp, nonce, path, body))


def verify(
    keys: Mapping[str, bytes],
    headers: Mapping[str, str],
    path: str,
    body: bytes,
    seen: Nonces,
    now: float | None = None,
) -> str:
    """The sending body's code, if the request is signed by its key, fresh, and not seen before;
    else Refused."""
    body_code = headers.get("X-Linkage-Body", "")
    nonce = headers.get("X-Linkage-Nonce", "")
    stamp = headers.get("X-Linkage-Timestamp", "")
    given = headers.get("X-Linkage-Mac", "")
    if body_code not in keys or not NONCE.fullmatch(nonce) or not stamp.isascii() or not stamp.isdigit():
        raise Refused("the request is not signed by a known body")
    now = time.time() if now is None else now
    if abs(int(stamp) - now) > CLOCK_SKEW:
        raise Refused("the request's timestamp is too far from the receiver's clock")
    if not hmac.compare_digest(_mac(keys[body_code], body_code, int(stamp), nonce, path, body), given):
        raise Refused("the request's signature does not match: altered, or not the body's key")
    seen.admit(body_code, nonce, int(stamp), now)
    return body_code


def chain_hash(previous: str, text: str) -> str:
    """The hash of a record's canonical text chained to the one before it."""
    return hashlib.sha256(previous.encode() + b"\n" + text.encode()).hexdigest()


def first_broken(records: Iterable[tuple[str, str]], previous: str = GENESIS, start: int = 0) -> int | None:
    """The position of the first record whose stored hash does not follow from the ones before it,
    or None when the chain holds. `records`: (stored hash, canonical text) in order, from position
    `start`, whose record follows on from `previous` (the genesis; after a purge, the last purged
    record's hash).

    The same hash as chain_hash, spelt out: a million records is the goal, and every attribute
    looked up once per record counts. Stored hashes are no secret: a plain comparison will do."""
    sha256 = hashlib.sha256
    last = previous.encode()
    for position, (stored, text) in enumerate(records, start):
        if sha256(last + b"\n" + text.encode()).hexdigest() != stored:
            return position
        last = stored.encode()
    return None
