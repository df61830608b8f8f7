"""The LGWAN-ASP front's certificates: one per office, the gateways' own, and the CRL that revokes."""

from __future__ import annotations

import shutil

import pytest
from cryptography import x509

from lgcloud.cli import main
from lgcloud.state.directory import state_dir
from lgcloud.state.offices import issue_office, office_certificate, revocation_list, revoke_office, server_certificate

STACK = "officestest"


@pytest.fixture
def stack():
    yield STACK
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


def _load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_an_office_keeps_its_certificate_until_it_is_revoked(stack):
    first = office_certificate(stack, "a-city")
    assert first.key.stat().st_mode & 0o777 == 0o600
    serial = _load(first.certificate).serial_number
    assert _load(office_certificate(stack, "a-city").certificate).serial_number == serial
    assert _load(first.certificate).subject.rfc4514_string() == "CN=office-a-city"
    revoked = revoke_office(stack, "a-city")
    assert revoked is not None and revoked.serial == f"{serial:x}"
    crl = x509.load_pem_x509_crl(revocation_list(stack).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert _load(office_certificate(stack, "a-city").certificate).serial_number != serial  # a revoked one is replaced


def test_a_new_certificate_leaves_the_old_one_off_the_crl(stack):
    old = _load(office_certificate(stack, "b-town").certificate).serial_number
    new = _load(issue_office(stack, "b-town", days=1).certificate)
    assert new.serial_number != old
    assert (new.not_valid_after_utc - new.not_valid_before_utc).days <= 1
    crl = x509.load_pem_x509_crl(revocation_list(stack).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(old) is None


def test_the_gateways_certificate_names_every_service_and_address(stack):
    cert = _load(server_certificate(stack, ["jumin.a-city.lgwan.test"], ["10.100.1.254"]).certificate)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["jumin.a-city.lgwan.test"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.100.1.254"]
    again = server_certificate(stack, ["jumin.a-city.lgwan.test", "jumin.b-town.lgwan.test"], ["10.100.1.254"])
    assert _load(again.certificate).serial_number != cert.serial_number  # names changed: issued anew


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ca", "revoke"], "needs --municipality"),
        (["ca", "issue", "--municipality", "z-town"], "no municipality 'z-town'"),
        (["ca", "issue", "--municipality", "a-city", "--days", "0"], "--days goes with `issue`, from 1 to 825"),
    ],
)
def test_bad_ca_arguments_are_refused_naming_what_is_wrong(capsys, args, message):
    assert main([*args, "--stack", "dev"]) == 2
    assert message in capsys.readouterr().err


def test_the_crl_is_kept_until_a_revocation_changes_it(stack):
    office_certificate(stack, "a-city")
    first = revocation_list(stack).read_bytes()
    assert revocation_list(stack).read_bytes() == first  # a configure changes nothing
    revoke_office(stack, "a-city")
    assert revocation_list(stack).read_bytes() != first
