"""公的個人認証 in the lab: a CA standing in for J-LIS, and the 個人番号カード it issues.

A card is a PKCS#12 file holding a new key and its 利用者証明用電子証明書, opened with the card's
4-digit PIN. The certificate names no person (as the real one): its serial is what the portal
knows of the card, and the issuing municipality and the registry's row of the resident are kept
here, beside it, never the 住民票コード or the 個人番号. The resident's key is written into the
card only; J-LIS keeps no copy. A card is revoked by the operator, by a new card for the same
resident (再交付), or by a change of its facts (転出); the CRL lists every revoked one, and the
portal loads it. Everything is in ``.lgcloud/<stack>/pki/jpki/``, the CA's key 0600::

    card = issue_card("dev", "a-city", ref, "1234", valid_until, Path("card.p12"))
    card.serial, card.not_after   # the certificate's serial (hex) and its last moment
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .directory import file_lock, write_atomic
from .pki import Certificate, Revoked, _authority, authority_directory, server_certificate, signed_revocations

__all__ = [
    "CARD_SUBJECT",
    "PIN",
    "PIN_TRIES",
    "WrongPin",
    "Card",
    "CardReader",
    "card_authority",
    "card_revocation_list",
    "cards",
    "issue_card",
    "open_card",
    "portal_certificate",
    "read_card",
    "revoke_card",
    "withdraw_card",
]

PIN = re.compile(r"[0-9]{4}")  # the 利用者証明用 PIN: four digits
PIN_TRIES = 3  # wrong PINs in a row that lock a 利用者証明用電子証明書, as the card's chip does
CARD_SUBJECT = "利用者証明用電子証明書"  # every card's subject: the certificate names no person
# Why a card was revoked, as the CRL states it (RFC 5280's reasons).
REASONS = {
    "revoked": x509.ReasonFlags.unspecified,  # by the operator: `lgcloud card revoke`
    "superseded": x509.ReasonFlags.superseded,  # a new card for the same resident
    "moved": x509.ReasonFlags.affiliation_changed,  # 転出: the card's facts changed
    "renamed": x509.ReasonFlags.affiliation_changed,  # 氏名の変更: so did they
    "unregistered": x509.ReasonFlags.cessation_of_operation,  # the registry could not register it
}


@dataclass(frozen=True)
class Card:
    serial: str  # the certificate's serial, hex
    municipality: str  # the issuing municipality's id
    resident: str  # the registry's row of the resident (its `ref`), no number of the person
    issued_at: str  # ISO 8601
    not_after: str  # ISO 8601: the certificate's last moment
    revoked_at: str | None = None
    reason: str | None = None  # a key of REASONS
    # The card file's SHA-256: which card a reader holds before its PIN opens it (its bags are
    # encrypted under the PIN), so that a wrong PIN is counted against that card.
    digest: str | None = None
    pin_failures: int = 0  # wrong PINs in a row; PIN_TRIES of them lock the card
    last_pin_failure_at: str | None = None

    @property
    def locked(self) -> bool:
        return self.pin_failures >= PIN_TRIES

    @property
    def valid(self) -> bool:
        return not self.locked and self.revoked_at is None and datetime.datetime.fromisoformat(self.not_after) > _now()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _directory(stack: str, create: bool = True) -> Path:
    return authority_directory(stack, "jpki", create)


def _ca(directory: Path, stack: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return _authority(directory, f"lgcloud {stack} JPKI CA (J-LIS stand-in)")


def _register(directory: Path) -> dict[str, Card]:
    path = directory / "cards.json"
    if not path.exists():
        return {}
    return {serial: Card(**card) for serial, card in json.loads(path.read_text(encoding="utf-8")).items()}


def _keep(directory: Path, register: dict[str, Card]) -> None:
    kept = {serial: asdict(card) for serial, card in register.items()}
    write_atomic(directory / "cards.json", json.dumps(kept, indent=2, ensure_ascii=False), 0o600)


def card_authority(stack: str) -> Path:
    """The CA's certificate, which the portal trusts (made the first time it is asked for)."""
    directory = _directory(stack)
    with file_lock(directory / ".lock"):
        _ca(directory, stack)
    return directory / "ca.crt"


def portal_certificate(stack: str, name: str, address: str) -> Certificate:
    """マイ・ポータル's TLS server certificate for its name and internet address, signed by the same
    CA (the lab has no public web CA): issued when either changes."""
    directory = _directory(stack)
    with file_lock(directory / ".lock"):
        return server_certificate(directory, "portal", _ca(directory, stack), name, [name], [address], 825)


def issue_card(stack: str, municipality: str, resident: str, pin: str, not_after: datetime.datetime, out: Path) -> Card:
    """A new card for the resident written to `out` (0600, never over a file that exists), and
    any card the resident had revoked as superseded. The caller checked that the registry holds
    the resident and that `not_after` lies ahead (a test may make an expired card)."""
    if not PIN.fullmatch(pin):
        raise ValueError("a card's PIN is four digits")
    directory = _directory(stack)
    with file_lock(directory / ".lock"):
        ca_key, ca = _ca(directory, stack)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CARD_SUBJECT)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now - datetime.timedelta(minutes=5), not_after - datetime.timedelta(days=1)))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        protection = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(50_000)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(pin.encode())
        )
        packed = pkcs12.serialize_key_and_certificates(b"JPKI", key, cert, [ca], protection)
        # O_EXCL: an existing file, perhaps someone's card, is kept; 0600 from the first byte.
        with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as card_file:
            card_file.write(packed)
        register = _register(directory)
        for serial, held in register.items():
            if held.municipality == municipality and held.resident == resident and held.revoked_at is None:
                register[serial] = _revoked(held, "superseded")
        card = Card(
            f"{cert.serial_number:x}",
            municipality,
            resident,
            now.isoformat(),
            not_after.isoformat(),
            digest=hashlib.sha256(packed).hexdigest(),
        )
        register[card.serial] = card
        _keep(directory, register)
        (directory / "cards").mkdir(mode=0o700, exist_ok=True)
        write_atomic(directory / "cards" / f"{card.serial}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return card


@dataclass(frozen=True)
class CardReader:
    """A card opened with its PIN, as the PEM files a TLS client presents (a card reader's part)."""

    card: Path
    certificate: Path
    key: Path


class WrongPin(ValueError):
    """The PIN did not open the card; how many tries are left (0: the card is locked)."""

    def __init__(self, path: Path, left: int):
        super().__init__(f"the PIN does not open {path}")
        self.left = left


def read_card(stack: str, path: Path, pin: str) -> CardReader:
    """The card's certificate and key written beside it (``.crt``, ``.key`` 0600) for a TLS client,
    as a card reader hands them over once the PIN opens the card. A wrong PIN is counted against
    the card (WrongPin); PIN_TRIES in a row lock it, and a locked card opens no more (ValueError)."""
    packed = path.read_bytes()
    digest = hashlib.sha256(packed).hexdigest()
    directory = _directory(stack)
    with file_lock(directory / ".lock"):
        register = _register(directory)
        known = next((c for c in register.values() if c.digest == digest), None)
        if known is not None and known.locked:
            raise ValueError(
                f"card {known.serial} is locked after {PIN_TRIES} wrong PINs: the municipality issues a new one"
            )
        try:
            key, cert, _ = pkcs12.load_key_and_certificates(packed, pin.encode())
        except ValueError:
            if known is None:
                raise WrongPin(path, PIN_TRIES) from None
            failures = known.pin_failures + 1
            register[known.serial] = replace(known, pin_failures=failures, last_pin_failure_at=_now().isoformat())
            _keep(directory, register)
            raise WrongPin(path, PIN_TRIES - failures) from None
        if known is not None and known.pin_failures:
            register[known.serial] = replace(known, pin_failures=0)
            _keep(directory, register)
    if key is None or cert is None:
        raise ValueError(f"{path} holds no key and certificate")
    reader = CardReader(path, path.with_suffix(".crt"), path.with_suffix(".key"))
    write_atomic(reader.certificate, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_atomic(reader.key, pem, 0o600)
    return reader


def open_card(path: Path, pin: str) -> x509.Certificate:
    """The card's certificate, as a card reader shows it once the PIN opens the card; ValueError
    when the PIN does not."""
    _, cert, _ = pkcs12.load_key_and_certificates(path.read_bytes(), pin.encode())
    if cert is None:
        raise ValueError(f"{path} holds no certificate")
    return cert


def _revoked(card: Card, reason: str) -> Card:
    return Card(**{**asdict(card), "revoked_at": _now().isoformat(), "reason": reason})


def withdraw_card(stack: str, serial: str, out: Path) -> None:
    """A card the registry could not register: its file removed (made by issue_card, nobody's yet)
    and its certificate revoked, so that it never signs anyone in."""
    out.unlink(missing_ok=True)
    directory = _directory(stack)
    with file_lock(directory / ".lock"):
        register = _register(directory)
        register[serial] = _revoked(register[serial], "unregistered")
        _keep(directory, register)


def revoke_card(stack: str, municipality: str, resident: str, reason: str = "revoked") -> list[Card]:
    """Revoke the resident's cards that are not yet revoked; the ones it revoked."""
    directory = _directory(stack)
    with file_lock(directory / ".lock"):
        register = _register(directory)
        done = []
        for serial, held in register.items():
            if held.municipality == municipality and held.resident == resident and held.revoked_at is None:
                register[serial] = _revoked(held, reason)
                done.append(register[serial])
        _keep(directory, register)
        return done


def cards(stack: str, municipality: str | None = None) -> list[Card]:
    """Every card issued (of one municipality), oldest first."""
    held = _register(_directory(stack, create=False)).values()  # read only: a scrape makes nothing
    return sorted((c for c in held if municipality in (None, c.municipality)), key=lambda c: c.issued_at)


def card_revocation_list(stack: str) -> Path:
    """The CRL of every revoked card (what the portal loads)."""
    directory = _directory(stack)
    with file_lock(directory / ".lock"):
        revoked = [
            Revoked(c.serial, datetime.datetime.fromisoformat(c.revoked_at), REASONS[c.reason or "revoked"])
            for c in _register(directory).values()
            if c.revoked_at is not None
        ]
        return signed_revocations(directory / "cards.crl", _ca(directory, stack), revoked)
