"""Every VM, over SSH: sshd supervised by runit, key-only login, names and addresses as declared."""

from __future__ import annotations

import paramiko
import pytest

pytestmark = pytest.mark.live


@pytest.mark.hosts("all")
def test_sshd_runs_under_runit(vm, name):
    host = vm(name)
    assert host.process.get(pid=1).comm == "runsvdir", "runit is not PID 1"
    assert host.check_output("sv status sshd").startswith("run: sshd"), "sshd is not supervised"
    assert host.socket("tcp://0.0.0.0:22").is_listening


@pytest.mark.hosts("all")
def test_password_login_is_off(vm, name):
    settings = vm(name).check_output("sshd -T")
    assert "passwordauthentication no" in settings
    assert "permitrootlogin without-password" in settings or "permitrootlogin prohibit-password" in settings
    assert vm(name).check_output("passwd -S root").split()[1] == "L", "root has a usable password"


def test_a_password_is_refused_by_the_server(lab):
    address = lab.vm("a-city-app").addresses["mgmt"]
    transport = paramiko.Transport((address, 22))
    try:
        transport.start_client(timeout=5)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("root", "root")
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()


@pytest.mark.hosts("all")
def test_hostname_and_addresses_are_as_declared(vm, lab, name):
    host = vm(name)
    assert host.check_output("hostname") == name
    declared = set(lab.vm(name).addresses.values())
    if name == "gateway":  # the center's gateway holds every office's service address (a /32 each)
        declared |= set(lab.service_addresses.values())
    actual = {a.split("/")[0] for a in host.check_output("ip -o -4 addr show scope global | awk '{print $4}'").split()}
    assert actual == declared, f"{name}: {actual} != {declared}"
