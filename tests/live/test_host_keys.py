"""Every SSH connection of lgcloud checks the VM's host key against the one `up` read from its disk.

A machine that answers at a VM's mgmt address with another key (one that took the address, or a
VM remade outside lgcloud) is refused before anything is sent: `configure` (whose roles carry the
stack's passwords), the drills' and backups' runbook, the tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lgcloud.ops.lab import Lab, LabError
from lgcloud.state.hostkeys import HOST_KEY, pinned_host_keys

from .conftest import STACK

pytestmark = pytest.mark.live

VICTIM = "a-city-terminal"
PRIVATE = HOST_KEY.removesuffix(".pub")
BAIT_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIGJhaXRiYWl0YmFpdGJhaXRiYWl0YmFpdGJhaXRiYWl0"  # well-formed, nobody's


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
        original = another_key_on_disk(ops)
        try:
            yield
        finally:
            put_back(ops, original)


def another_key_on_disk(ops: Lab) -> dict[str, bytes]:
    """A new host key written on the VICTIM's disk, through the hypervisor; the files it replaced."""
    original = {path: ops.read_file(VICTIM, path) for path in (PRIVATE, HOST_KEY)}
    key = Ed25519PrivateKey.generate()
    encoding, formats = serialization.Encoding, serialization.PrivateFormat
    ops.write_file(
        VICTIM, PRIVATE, key.private_bytes(encoding.PEM, formats.OpenSSH, serialization.NoEncryption()), 0o600
    )
    ops.write_file(
        VICTIM, HOST_KEY, key.public_key().public_bytes(encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return original


def put_back(ops: Lab, original: dict[str, bytes]) -> None:
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


def up() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", "up", "--stack", STACK], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_up_pins_again_the_key_a_vm_remade_outside_lgcloud_holds(configured, dev):
    """A no-change `up` keeps the pin of a VM whose disk holds the same key, and pins the new key
    a VM's disk holds after it was remade outside lgcloud (what the mismatch message advises)."""
    before = pinned_host_keys(STACK)[VICTIM]
    up()
    assert pinned_host_keys(STACK)[VICTIM] == before
    with Lab(dev) as ops:
        original = another_key_on_disk(ops)
        written = ops.read_file(VICTIM, HOST_KEY).decode().split()[1]
    try:
        up()
        assert pinned_host_keys(STACK)[VICTIM].key == written
        with Lab(dev) as ops:
            assert ops.run(VICTIM, "hostname").strip()
    finally:
        with Lab(dev) as ops:
            put_back(ops, original)
        up()
    assert pinned_host_keys(STACK)[VICTIM] == before


def test_a_link_inside_a_vm_does_not_make_up_read_a_file_of_this_host(configured, dev):
    """Root in a VM is hostile: its host key file made a link to a path of this machine, `up`
    pins no key from this machine's file (it reads the VM's disk without following links)."""
    before = pinned_host_keys(STACK)[VICTIM]
    bait = Path("/var/tmp/lgcloud-host-key-bait.pub")  # exists on this machine only, not in the VM
    bait.write_text(f"ssh-ed25519 {BAIT_KEY} bait\n")
    kept = f"{HOST_KEY}.kept"
    with Lab(dev) as ops:
        # Through the hypervisor: once the pin changed, no SSH would reach the VM to put it back.
        code, said = ops.container(VICTIM).exec_run(["sh", "-c", f"mv {HOST_KEY} {kept} && ln -s {bait} {HOST_KEY}"])
        assert code == 0, said
        try:
            up()
            assert pinned_host_keys(STACK)[VICTIM] == before
        finally:
            ops.container(VICTIM).exec_run(["sh", "-c", f"rm -f {HOST_KEY} && mv {kept} {HOST_KEY}"])
            bait.unlink()
    up()
    assert pinned_host_keys(STACK)[VICTIM] == before
