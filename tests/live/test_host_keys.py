"""Every SSH connection of lgcloud checks the VM's host key against the one `up` read from its disk.

A machine that answers at a VM's mgmt address with another key (one that took the address, or a
VM remade outside lgcloud) is refused before anything is sent: `configure` (whose roles carry the
stack's passwords), the drills' and backups' runbook, the tests.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lgcloud.ops.lab import Lab, LabError
from lgcloud.state.hostkeys import HOST_KEY, pinned_host_keys

from .conftest import STACK

pytestmark = pytest.mark.live

VICTIM = "a-city-terminal"
PRIVATE = HOST_KEY.removesuffix(".pub")


def test_every_vm_has_its_host_key_pinned(configured, lab):
    pinned = pinned_host_keys(STACK)
    for vm in lab.vms:
        assert vm.name in pinned, vm.name
        assert (pinned[vm.name].kind, pinned[vm.name].address) == ("ssh-ed25519", vm.addresses["mgmt"])


@pytest.fixture
def impostor(configured, dev):
    """The VICTIM's address answered with another host key (sshd reads its keys for every new
    connection); its own keys written back afterwards, through the hypervisor."""
    with Lab(dev) as ops:
        original = {path: ops.read_file(VICTIM, path) for path in (PRIVATE, HOST_KEY)}
        key = Ed25519PrivateKey.generate()
        encoding, formats = serialization.Encoding, serialization.PrivateFormat
        private = key.private_bytes(encoding.PEM, formats.OpenSSH, serialization.NoEncryption())
        public = key.public_key().public_bytes(encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        try:
            ops.write_file(VICTIM, PRIVATE, private, 0o600)
            ops.write_file(VICTIM, HOST_KEY, public)
            yield
        finally:
            for path, content in original.items():
                ops.write_file(VICTIM, path, content, 0o600 if path == PRIVATE else 0o644)


def test_a_machine_with_another_host_key_is_sent_nothing(impostor, dev):
    ops = Lab(dev)
    try:
        with pytest.raises(LabError, match="another SSH host key than the one pinned"):
            ops.run(VICTIM, "true")
    finally:
        ops.close()
    result = subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", "configure", "--stack", STACK, "--limit", VICTIM],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0, result.stdout
    said = result.stdout + result.stderr
    assert "another SSH host key than the one pinned" in said, said[-2000:]


def test_the_real_vm_is_reached_again_once_its_key_is_back(configured, dev):
    ops = Lab(dev)
    try:
        assert ops.run(VICTIM, "hostname").strip()
    finally:
        ops.close()
