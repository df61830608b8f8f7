"""The LGWAN-ASP front speaks TLS only, and only to an office with a certificate of its own
municipality: no certificate, an expired or a revoked one ends in the handshake; another
municipality's certificate, or the right one from the wrong terminal, gets 403."""

from __future__ import annotations

import base64
import datetime
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lgcloud.model.naming import OFFICE_TLS
from lgcloud.observe.prometheus import Prometheus
from lgcloud.state.directory import state_dir
from lgcloud.state.facts import lab_facts

from .conftest import STACK

pytestmark = pytest.mark.live

PKI = state_dir(STACK) / "pki" / "lgwan"


def ask(host, municipality: str, *curl: str) -> tuple[int, str]:
    """curl's exit code and the HTTP status (000: no answer) for /healthz of the municipality."""
    result = host.run(
        "curl -q -s -o /dev/null -w '%{http_code}' --max-time 5 "
        f"--cacert {OFFICE_TLS['ca']} {' '.join(curl)} https://jumin.{municipality}.lgwan.test/healthz"
    )
    return result.rc, result.stdout.strip()


def put(host, path: str, content: bytes) -> None:
    host.run(f"install -m 0600 /dev/null {path} && printf %s {base64.b64encode(content).decode()} | base64 -d > {path}")


@pytest.fixture(scope="module")
def offices(configured, vm, dev):
    return vm(f"{dev.municipalities[0].id}-terminal"), dev.municipalities[0], dev.municipalities[1]


def test_an_office_with_its_certificate_is_served(offices):
    host, office, _ = offices
    own = f"--cert {OFFICE_TLS['certificate']} --key {OFFICE_TLS['key']}"
    assert ask(host, office.id, own) == (0, "200")


def test_no_certificate_ends_in_the_handshake(offices):
    host, office, _ = offices
    code, status = ask(host, office.id)
    assert code != 0 and status == "000", (code, status)


def test_plain_http_is_not_served(offices):
    host, office, _ = offices
    result = host.run(
        f"curl -q -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://jumin.{office.id}.lgwan.test/healthz"
    )
    assert result.stdout.strip() == "000", result.stdout


def test_another_municipalitys_certificate_gets_nothing_of_either(offices, lab):
    """Ａ市's terminal holding Ｂ町's certificate: Ａ市's service refuses it (not Ａ市's office),
    Ｂ町's refuses it too (not from Ｂ町's terminal); Ａ市's own certificate is no key to Ｂ町.
    Ｂ町's name is asked of the gateway at Ａ市's own service address (the terminal knows no other)."""
    host, office, other = offices
    at_own = f"--resolve jumin.{other.id}.lgwan.test:443:{lab.service_addresses[office.id]}"
    put(host, "/tmp/other.crt", (PKI / f"office-{other.id}.crt").read_bytes())
    put(host, "/tmp/other.key", (PKI / f"office-{other.id}.key").read_bytes())
    try:
        borrowed = "--cert /tmp/other.crt --key /tmp/other.key"
        assert ask(host, office.id, borrowed) == (0, "403")
        assert ask(host, other.id, borrowed, at_own) == (0, "403")
    finally:
        host.run("rm -f /tmp/other.crt /tmp/other.key")
    own = f"--cert {OFFICE_TLS['certificate']} --key {OFFICE_TLS['key']}"
    assert ask(host, other.id, own, at_own) == (0, "403")


def test_an_expired_certificate_ends_in_the_handshake(offices):
    host, office, _ = offices
    ca_key = serialization.load_pem_private_key((PKI / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((PKI / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"office-{office.id}")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(long_ago)
        .not_valid_after(long_ago + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    put(host, "/tmp/expired.crt", cert.public_bytes(serialization.Encoding.PEM))
    put(
        host,
        "/tmp/expired.key",
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    try:
        code, status = ask(host, office.id, "--cert /tmp/expired.crt --key /tmp/expired.key")
    finally:
        host.run("rm -f /tmp/expired.crt /tmp/expired.key")
    assert code != 0 and status == "000", (code, status)


def lgcloud(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", *args, "--stack", STACK], capture_output=True, text=True, timeout=600
    )


def test_a_revoked_certificate_is_refused_at_the_next_request_and_a_new_one_serves(vm, dev, configured):
    office = dev.municipalities[-1]
    host = vm(f"{office.id}-terminal")
    own = f"--cert {OFFICE_TLS['certificate']} --key {OFFICE_TLS['key']}"
    assert ask(host, office.id, own) == (0, "200")
    revoked = lgcloud("ca", "revoke", "--municipality", office.id)
    assert revoked.returncode == 0, revoked.stderr
    code, status = ask(host, office.id, own)
    assert code != 0 and status == "000", (code, status)
    listed = lgcloud("ca", "list", "--json")
    assert '"revoked": true' in listed.stdout
    assert lgcloud("ca", "issue", "--municipality", office.id).returncode == 0
    again = lgcloud("configure", "--limit", f"{office.id}-terminal")
    assert again.returncode == 0, again.stderr
    assert ask(host, office.id, own) == (0, "200")


def test_a_refused_handshake_is_counted_in_a_metric(offices):
    """HAProxy's TLS counters reach Prometheus through the gateway's node exporter: three offices'
    attempts without a certificate add three to the front's refused handshakes."""
    host, office, _ = offices
    prometheus = Prometheus(lab_facts(STACK).prometheus_url)
    refused = 'sum(haproxy_frontend_ssl_failed_handshakes_total{proxy="lgwan_asp", vm="gateway"})'

    def counted() -> float | None:
        found = prometheus.query(refused)
        return found[0][1] if found else None

    deadline = time.monotonic() + 60
    while (before := counted()) is None:  # the first scrape after configure
        assert time.monotonic() < deadline, "the gateway's TLS counters never reached Prometheus"
        time.sleep(2)
    for _ in range(3):
        assert ask(host, office.id)[1] == "000"
    while (after := counted()) is None or after < before + 3:
        assert time.monotonic() < deadline + 30, f"refused handshakes counted: {before} → {after}, not 3 more"
        time.sleep(2)
