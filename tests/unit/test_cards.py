"""公的個人認証's cards: a PKCS#12 the PIN opens, a certificate that names no person, one valid card
per resident, and the CRL that lists each revoked card with its reason."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from lgcloud.errors import OperatorError
from lgcloud.ops.cards import card_expiry
from lgcloud.state.cards import (
    CARD_SUBJECT,
    PIN_TRIES,
    WrongPin,
    card_authority,
    card_revocation_list,
    cards,
    issue_card,
    open_card,
    portal_certificate,
    read_card,
    revoke_card,
)
from lgcloud.state.directory import state_dir

STACK = "cardstest"
REF = "77fbd04b-ccb1-4095-b325-b685da4d64cc"
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)


@pytest.fixture
def stack():
    yield STACK
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


def _revocations(stack: str) -> dict[int, x509.ReasonFlags]:
    crl = x509.load_pem_x509_crl(card_revocation_list(stack).read_bytes())
    ca = x509.load_pem_x509_certificate(card_authority(stack).read_bytes())
    assert crl.is_signature_valid(ca.public_key())
    return {r.serial_number: r.extensions.get_extension_for_class(x509.CRLReason).value.reason for r in crl}


def test_a_card_opens_with_its_pin_only_and_names_no_person(stack, tmp_path: Path):
    card = issue_card(stack, "a-city", REF, "1234", LATER, tmp_path / "card.p12")
    assert (tmp_path / "card.p12").stat().st_mode & 0o777 == 0o600
    cert = open_card(tmp_path / "card.p12", "1234")
    assert f"{cert.serial_number:x}" == card.serial
    assert cert.subject.rfc4514_string() == f"CN={CARD_SUBJECT}"  # no name, no number of the person
    ca = x509.load_pem_x509_certificate(card_authority(stack).read_bytes())
    cert.verify_directly_issued_by(ca)
    assert abs(cert.not_valid_after_utc - LATER) < dt.timedelta(seconds=1)
    with pytest.raises(ValueError):
        open_card(tmp_path / "card.p12", "4321")
    assert (state_dir(stack) / "pki" / "jpki" / "ca.key").stat().st_mode & 0o777 == 0o600


def test_a_card_file_is_never_written_over(stack, tmp_path: Path):
    kept = tmp_path / "card.p12"
    kept.write_bytes(b"someone's card")
    with pytest.raises(FileExistsError):
        issue_card(stack, "a-city", REF, "1234", LATER, kept)
    assert kept.read_bytes() == b"someone's card" and cards(stack) == []


@pytest.mark.parametrize("pin", ["123", "12345", "abcd", "１２３４"])
def test_a_pin_is_four_ascii_digits(stack, tmp_path: Path, pin: str):
    with pytest.raises(ValueError, match="four digits"):
        issue_card(stack, "a-city", REF, pin, LATER, tmp_path / "card.p12")
    assert not (tmp_path / "card.p12").exists()


def test_a_new_card_supersedes_the_old_and_revocations_reach_the_crl_with_their_reason(stack, tmp_path: Path):
    first = issue_card(stack, "a-city", REF, "1234", LATER, tmp_path / "first.p12")
    other = issue_card(stack, "b-town", REF, "1234", LATER, tmp_path / "other.p12")  # another registry's row
    assert _revocations(stack) == {}
    second = issue_card(stack, "a-city", REF, "5678", LATER, tmp_path / "second.p12")
    assert _revocations(stack) == {int(first.serial, 16): x509.ReasonFlags.superseded}
    assert [c.serial for c in cards(stack, "a-city") if c.valid] == [second.serial]
    (moved,) = revoke_card(stack, "a-city", REF, "moved")
    assert moved.serial == second.serial and not moved.valid
    assert revoke_card(stack, "a-city", REF) == []  # nothing left to revoke
    assert _revocations(stack)[int(second.serial, 16)] == x509.ReasonFlags.affiliation_changed
    assert int(other.serial, 16) not in _revocations(stack)


def test_an_expired_card_is_not_valid(stack, tmp_path: Path):
    card = issue_card(stack, "a-city", REF, "1234", dt.datetime.now(dt.UTC) - dt.timedelta(days=1), tmp_path / "c.p12")
    assert not card.valid and card.revoked_at is None


def test_a_card_lasts_until_the_configured_day_in_japan_or_five_years():
    now = dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC)
    assert card_expiry(dt.date(2031, 3, 31), now) == dt.datetime(2031, 3, 31, 14, 59, 59, tzinfo=dt.UTC)
    assert card_expiry(None, now) == dt.datetime(2031, 12, 2, 14, 59, 59, tzinfo=dt.UTC)
    with pytest.raises(OperatorError, match="card_valid_until is 2026-12-01, which is past"):
        card_expiry(dt.date(2026, 12, 1), now)


def test_a_card_reader_hands_a_tls_client_the_certificate_and_a_0600_key(stack, tmp_path: Path):
    card = issue_card(stack, "a-city", REF, "1234", LATER, tmp_path / "card.p12")
    with pytest.raises(ValueError):
        read_card(stack, tmp_path / "card.p12", "9999")
    reader = read_card(stack, tmp_path / "card.p12", "1234")
    cert = x509.load_pem_x509_certificate(reader.certificate.read_bytes())
    assert f"{cert.serial_number:x}" == card.serial
    assert reader.key.stat().st_mode & 0o777 == 0o600
    ssl.create_default_context().load_cert_chain(str(reader.certificate), str(reader.key))  # a pair that matches


def test_the_portals_certificate_is_kept_until_its_name_or_address_changes(stack):
    first = portal_certificate(stack, "myna.portal.test", "10.100.5.10").certificate.read_bytes()
    assert portal_certificate(stack, "myna.portal.test", "10.100.5.10").certificate.read_bytes() == first
    moved = portal_certificate(stack, "myna.portal.test", "10.100.9.10").certificate
    cert = x509.load_pem_x509_certificate(moved.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.100.9.10"]
    ca = x509.load_pem_x509_certificate(card_authority(stack).read_bytes())
    cert.verify_directly_issued_by(ca)


def test_wrong_pins_are_counted_against_the_card_and_three_in_a_row_lock_it(stack, tmp_path: Path):
    card = issue_card(stack, "a-city", REF, "1234", LATER, tmp_path / "card.p12")
    with pytest.raises(WrongPin) as first:
        read_card(stack, tmp_path / "card.p12", "0000")
    assert first.value.left == PIN_TRIES - 1
    read_card(stack, tmp_path / "card.p12", "1234")  # the right one resets the count
    assert [c.pin_failures for c in cards(stack)] == [0]
    for left in range(PIN_TRIES - 1, -1, -1):
        with pytest.raises(WrongPin) as wrong:
            read_card(stack, tmp_path / "card.p12", "0000")
        assert wrong.value.left == left
    [locked] = cards(stack)
    assert locked.serial == card.serial and locked.locked and not locked.valid and locked.last_pin_failure_at
    with pytest.raises(ValueError, match="locked"):
        read_card(stack, tmp_path / "card.p12", "1234")  # not even the right PIN opens it now
