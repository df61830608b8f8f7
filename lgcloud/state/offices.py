"""The certificates of the LGWAN-ASP front: a CA of the stack's own for it, the gateways' server
certificate, one client certificate per office, and the list of those revoked.

An office proves which municipality it is with its certificate (CN ``office-<id>``); HAProxy
requires one this CA signed, unexpired and not on the CRL, and checks that it names the
municipality whose service is asked for (the source address is a second check). Everything is in
``.lgcloud/<stack>/pki/lgwan/``, keys 0600; keys reach the VMs only through `lgcloud configure`::

    office_certificate("dev", "a-city").certificate   # .lgcloud/dev/pki/lgwan/office-a-city.crt
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from .directory import file_lock, write_atomic
from .pki import Certificate, Revoked, _authority, _signed_by, authority_directory, issue, signed_revocations
from .pki import server_certificate as pki_server_certificate

__all__ = [
    "OFFICE_DAYS",
    "OfficeCertificate",
    "issue_office",
    "office_certificate",
    "office_name",
    "offices",
    "revocation_list",
    "revoke_office",
    "server_certificate",
]

OFFICE_DAYS = 397  # an office's certificate lasts about a year (the CA/B limit for server ones)
SERVER = "gateway"  # the file name of the gateways' certificate


def office_name(municipality: str) -> str:
    """The common name an office's certificate carries, which HAProxy maps to the municipality."""
    return f"office-{municipality}"


@dataclass(frozen=True)
class OfficeCertificate:
    municipality: str
    serial: str  # hex
    not_after: datetime.datetime
    revoked: bool


def _directory(stack: str) -> Path:
    return authority_directory(stack, "lgwan")


def _ca(directory: Path, stack: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return _authority(directory, f"lgcloud {stack} LGWAN-ASP CA")


def _revoked(directory: Path) -> dict[str, str]:
    """Revoked serials (hex) and when, as written by revoke_office."""
    path = directory / "revoked.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _issue(
    directory: Path,
    stack: str,
    name: str,
    common_name: str,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
    days: int,
) -> Certificate:
    return issue(directory, name, _ca(directory, stack), common_name, [usage], names, datetime.timedelta(days=days))


def _usable(path: Path, ca: x509.Certificate, revoked: dict[str, str]) -> x509.Certificate | None:
    if not path.exists() or not path.with_suffix(".key").exists():
        return None
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if not _signed_by(cert, ca) or f"{cert.serial_number:x}" in revoked:
        return None
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30):
        return None  # renewed a month before it runs out
    return cert


def server_certificate(stack: str, names: list[str], addresses: list[str]) -> Certificate:
    """The gateways' certificate for every service name and address, issued when these change."""
    directory = _directory(stack)
    with file_lock(directory / ".lock"):
        return pki_server_certificate(
            directory, SERVER, _ca(directory, stack), "lgwan-asp gateway", names, addresses, 825
        )


def office_certificate(stack: str, municipality: str) -> Certificate:
    """The office's client certificate, issued when missing, revoked or about to run out."""
    directory = _directory(stack)
    name = office_name(municipality)
    with file_lock(directory / ".lock"):
        _, ca = _ca(directory, stack)
        if _usable(directory / f"{name}.crt", ca, _revoked(directory)) is not None:
            return Certificate(directory / f"{name}.crt", directory / f"{name}.key", directory / "ca.crt")
        return _issue(directory, stack, name, name, ExtendedKeyUsageOID.CLIENT_AUTH, [], OFFICE_DAYS)


def issue_office(stack: str, municipality: str, days: int = OFFICE_DAYS) -> Certificate:
    """A new certificate for the office, whatever it had (which stays valid until revoked)."""
    directory = _directory(stack)
    name = office_name(municipality)
    with file_lock(directory / ".lock"):
        return _issue(directory, stack, name, name, ExtendedKeyUsageOID.CLIENT_AUTH, [], days)


def revoke_office(stack: str, municipality: str) -> OfficeCertificate | None:
    """Put the office's current certificate on the CRL; None when it has none."""
    directory = _directory(stack)
    path = directory / f"{office_name(municipality)}.crt"
    with file_lock(directory / ".lock"):
        if not path.exists():
            return None
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        revoked = _revoked(directory)
        revoked[f"{cert.serial_number:x}"] = datetime.datetime.now(datetime.UTC).isoformat()
        write_atomic(directory / "revoked.json", json.dumps(revoked, indent=2), 0o644)
        return OfficeCertificate(municipality, f"{cert.serial_number:x}", cert.not_valid_after_utc, True)


def revocation_list(stack: str) -> Path:
    """The CRL of every revoked office certificate (what the gateways load)."""
    directory = _directory(stack)
    with file_lock(directory / ".lock"):
        revoked = [Revoked(serial, datetime.datetime.fromisoformat(at)) for serial, at in _revoked(directory).items()]
        return signed_revocations(directory / "offices.crl", _ca(directory, stack), revoked)


def offices(stack: str, municipalities: list[str]) -> list[OfficeCertificate]:
    """Each municipality's current office certificate (none listed for one that has none yet)."""
    directory = _directory(stack)
    revoked = _revoked(directory)
    found = []
    for m in municipalities:
        path = directory / f"{office_name(m)}.crt"
        if path.exists():
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            serial = f"{cert.serial_number:x}"
            found.append(OfficeCertificate(m, serial, cert.not_valid_after_utc, serial in revoked))
    return found
