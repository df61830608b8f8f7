"""Pinned SSH host keys: what `up` read from each VM's disk, in OpenSSH's known_hosts format."""

from __future__ import annotations

import shutil

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lgcloud.state.directory import state_dir
from lgcloud.state.hostkeys import PinnedKey, known_hosts_path, pin_host_keys, pinned_host_keys

STACK = "hostkeystest"


@pytest.fixture
def keys():
    def key(vm: str, address: str) -> PinnedKey:
        line = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
        return PinnedKey(vm, address, "ssh-ed25519", line.decode().split()[1])

    yield key
    shutil.rmtree(state_dir(STACK), ignore_errors=True)


def test_a_remade_vm_is_pinned_anew_and_a_removed_one_forgotten(keys):
    db, app = keys("a-city-db", "10.100.0.10"), keys("a-city-app", "10.100.0.11")
    pin_host_keys(STACK, [db, app])
    old_db = db
    db = keys("a-city-db", "10.100.0.10")
    pin_host_keys(STACK, [db], forget={"a-city-app"})
    assert pinned_host_keys(STACK) == {"a-city-db": db}
    assert db.key != old_db.key


def test_openssh_and_paramiko_read_the_file_by_name_and_by_address(keys):
    db = keys("a-city-db", "10.100.0.10")
    pin_host_keys(STACK, [db])
    known = paramiko.HostKeys(str(known_hosts_path(STACK)))
    for name in ("a-city-db", "10.100.0.10"):
        assert known.lookup(name)["ssh-ed25519"].get_base64() == db.key
    assert known.lookup("10.100.0.11") is None
