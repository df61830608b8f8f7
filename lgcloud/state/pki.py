"""The certificates of the backup network: a CA of the stack's own, and one certificate per VM
that speaks to the backup repository (pgBackRest's TLS server, both directions).

A certificate's common name is whom pgBackRest authorizes: a municipality's databases carry
lgcloud.model.naming.backup_client(its id), which the repository admits to its backups only; the
repository carries BACKUP_CLIENT, which the databases admit. Its one subject alternative name is
the VM's interconnect address, which the other side checks it reached. Keys are 0600 here and
reach the VMs only through `lgcloud configure` (or `lgcloud restore`)::

    pki = ensure_certificate("dev", "a-city-db", "municipality-a-city", "10.100.4.10")
    pki.certificate, pki.key, pki.authority   # .lgcloud/dev/pki/a-city-db.crt, …
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .directory import file_lock, state_dir, write_atomic

__all__ = [
    "Certificate",
    "Revoked",
    "authority_directory",
    "ensure_certificate",
    "issue",
    "server_certificate",
    "signed_revocations",
]

_VALID = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class Revoked:
    """One certificate on a CRL: since when, and why (None: unspecified, no reason stated)."""

    serial: str  # hex
    at: datetime.datetime
    reason: x509.ReasonFlags | None = None


@dataclass(frozen=True)
class Certificate:
    certificate: Path
    key: Path
    authority: Path  # the CA's certificate, which both sides trust


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def authority_directory(stack: str, name: str, create: bool = True) -> Path:
    """Where one of the stack's other CAs keeps its key, certificates and CRL (0700):
    ``.lgcloud/<stack>/pki/<name>/`` (``lgwan`` for the offices, ``jpki`` for the cards)."""
    directory = state_dir(stack) / "pki" / name
    if create:
        directory.mkdir(parents=True, mode=0o700, exist_ok=True)
    return directory


def _authority(directory: Path, common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA kept in `directory` (ca.key 0600, ca.crt), made with `common_name` the first time."""
    key_path, cert_path = directory / "ca.key", directory / "ca.crt"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_atomic(key_path, _pem_key(key), 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key, cert


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca` signed `cert` (a CA made anew has the same name, not the same key)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def ensure_certificate(stack: str, vm: str, common_name: str, address: str) -> Certificate:
    """The VM's certificate for `common_name` at `address`, issued when missing or when either changed."""
    directory = state_dir(stack) / "pki"
    directory.mkdir(mode=0o700, exist_ok=True)
    found = Certificate(directory / f"{vm}.crt", directory / f"{vm}.key", directory / "ca.crt")
    with file_lock(directory / ".lock"):
        ca_key, ca_cert = _authority(directory, f"lgcloud {stack} backup CA")
        if found.certificate.exists() and found.key.exists():
            current = x509.load_pem_x509_certificate(found.certificate.read_bytes())
            names = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            if (
                current.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == common_name
                and names.get_values_for_type(x509.DNSName) == [address]
                and _signed_by(current, ca_cert)
            ):
                return found
        # pgBackRest matches the host it dialled against DNS names; the lab dials addresses.
        usages = [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
        return issue(directory, vm, (ca_key, ca_cert), common_name, usages, [x509.DNSName(address)], _VALID)


def issue(
    directory: Path,
    name: str,
    authority: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    common_name: str,
    usages: list[x509.ObjectIdentifier],
    names: list[x509.GeneralName],
    valid: datetime.timedelta,
) -> Certificate:
    """A new key and a certificate for it, signed by `authority` (the CA of `directory`), written
    as ``<name>.key`` (0600) and ``<name>.crt``: the one way either CA of the stack signs."""
    ca_key, ca_cert = authority
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + valid)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    found = Certificate(directory / f"{name}.crt", directory / f"{name}.key", directory / "ca.crt")
    write_atomic(found.key, _pem_key(key), 0o600)
    write_atomic(found.certificate, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return found


def server_certificate(
    directory: Path,
    name: str,
    authority: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    common_name: str,
    names: list[str],
    addresses: list[str],
    days: int,
) -> Certificate:
    """A TLS server's certificate for these DNS names and addresses, kept while it carries exactly
    them, `authority` signed it and it has a month left; issued anew otherwise. The caller holds
    the CA's lock."""
    wanted: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    wanted += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    found = Certificate(directory / f"{name}.crt", directory / f"{name}.key", directory / "ca.crt")
    if found.certificate.exists() and found.key.exists():
        current = x509.load_pem_x509_certificate(found.certificate.read_bytes())
        have = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        month = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
        if list(have) == wanted and _signed_by(current, authority[1]) and current.not_valid_after_utc > month:
            return found
    usages = [x509.ExtendedKeyUsageOID.SERVER_AUTH]
    return issue(directory, name, authority, common_name, usages, wanted, datetime.timedelta(days=days))


def signed_revocations(
    path: Path, authority: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], revoked: list[Revoked]
) -> Path:
    """The CRL at `path` listing exactly `revoked`: kept while it does and `authority` signed it,
    signed anew otherwise (so that a configure with nothing revoked since changes nothing). The
    caller holds the CA's lock."""
    ca_key, ca = authority
    if path.exists():
        current = x509.load_pem_x509_crl(path.read_bytes())
        listed = {f"{r.serial_number:x}" for r in current}
        if current.is_signature_valid(ca_key.public_key()) and listed == {r.serial for r in revoked}:
            return path
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=3650))  # signed anew at every revocation and configure
    )
    for entry in sorted(revoked, key=lambda r: r.serial):
        one = x509.RevokedCertificateBuilder().serial_number(int(entry.serial, 16)).revocation_date(entry.at)
        if entry.reason is not None:
            one = one.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(one.build())
    write_atomic(path, builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), 0o644)
    return path
