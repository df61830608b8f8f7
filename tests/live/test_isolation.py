"""The isolation policy of the design, checked by real connection attempts between VMs.

The expected matrix is written from the policy's words, not from the firewall the program
declares, so a wrong firewall shows up here:

- a municipality's office reaches the center through the gateway only;
- no municipality reaches another's segment, nor its VMs over a shared one;
- mgmt is for operations: only the controller, the bastion and the monitor open connections on it;
- replication crosses only `interconnect`, each database to its own replica; backups cross it
  between the repository and each database, at pgBackRest's port only;
- nothing in a マイナンバー segment has a route out of the lab.

Every VM of the inventory is a source, and every address of every other VM a target.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from lgcloud.ops.lab import Lab

from .conftest import group, probe_datagrams
from .policy import against_policy, allowed, host_ends, observe

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def observed(vm, lab):
    return observe(vm, lab)


@pytest.mark.hosts("all")
def test_reachability_matches_the_policy(observed, lab, name):
    wrong = against_policy(lab, observed, name)
    assert not wrong, f"{name}: against policy: {wrong}"
    # A probe that could reach nothing at all would agree with every "refused" for the wrong reason.
    assert any(observed[name].values()), f"{name} reached nothing: is its probe working?"


@pytest.fixture(scope="module")
def datagrams(vm, lab):
    """From every VM, ICMP echo and UDP to every address of the others and to the host's end of
    each of its own segments."""

    def from_source(name: str) -> dict[str, dict[str, bool]]:
        source = lab.vm(name)
        targets = [a for t in lab.vms if t.name != name for a in t.addresses.values()]
        return probe_datagrams(vm(name), targets + host_ends(lab, source))

    sources = group("all")
    with ThreadPoolExecutor(6) as pool:
        return dict(zip(sources, pool.map(from_source, sources)))


@pytest.mark.hosts("all")
@pytest.mark.parametrize("protocol", ["icmp", "udp"])
def test_datagrams_follow_the_policy_and_never_reach_the_host(datagrams, lab, name, protocol):
    source = lab.vm(name)
    expected = {
        address: allowed(source, target, segment, None)
        for target in lab.vms
        if target.name != name
        for segment, address in target.addresses.items()
    }
    expected |= {address: False for address in host_ends(lab, source)}  # the provider's machine
    seen = datagrams[name][protocol]
    wrong = {
        address: "answered" if seen[address] else "silent" for address in expected if seen[address] != expected[address]
    }
    assert not wrong, f"{name} ({protocol}): against policy: {wrong}"
    if any(expected.values()):  # the backup VM may open nothing but TCP: nothing to show for its probe
        assert any(seen.values()), f"{name} reached nothing over {protocol}: is its probe working?"


def test_the_host_is_silent_because_the_vm_drops_what_it_sends(lab, dev, vm):
    """Not a host that ignores pings: the VM's own egress rule drops them, as its counter shows."""
    name = f"{dev.municipalities[0].id}-terminal"
    end = host_ends(lab, lab.vm(name))[0]
    with Lab(dev) as ops:
        container = ops.container(name)

        def dropped() -> int:
            rules = container.exec_run(["iptables", "-w", "-L", "LGCLOUD-EGRESS", "-n", "-v", "-x"]).output.decode()
            return sum(int(line.split()[0]) for line in rules.splitlines() if "DROP" in line and end in line)

        before = dropped()
        assert probe_datagrams(vm(name), [end])["icmp"][end] is False
        assert dropped() > before


def test_the_matrix_has_both_kinds_of_pair(observed):
    results = [ok for by_source in observed.values() for ok in by_source.values()]
    assert any(results) and not all(results), "a matrix of one kind proves nothing"


@pytest.mark.municipalities
def test_each_terminal_reaches_its_gateway(observed, lab, m):
    gateway = lab.vm("gateway").addresses[m.access]
    assert observed[f"{m.id}-terminal"][f"{gateway}:22"], f"{m.id}-terminal cannot reach the gateway on {m.access}"


@pytest.mark.hosts("all")
def test_no_route_out_of_the_lab(vm, name):
    routes = vm(name).check_output("ip -4 route show default")
    assert routes == "", f"{name} has a default route: {routes}"


@pytest.mark.hosts("all")
def test_the_controller_reaches_every_vm_on_mgmt(lab, name):
    with socket.create_connection((lab.vm(name).addresses["mgmt"], 22), timeout=2) as conn:
        conn.settimeout(2)
        banner = conn.recv(8)
    assert banner.startswith(b"SSH-"), f"{name} on mgmt answers {banner!r}, not sshd"


NET_ADMIN, NET_RAW = 12, 13  # capability numbers (linux/capability.h)


@pytest.mark.hosts("all")
def test_root_in_a_vm_keeps_net_admin_and_net_raw_on_gateways_only(vm, lab, name):
    """A root SSH session's bounding set: a tenant VM can neither regain the two nor pass them on."""
    bounding = int(vm(name).check_output("awk '/^CapBnd/ {print $2}' /proc/self/status"), 16)
    held = {cap for cap in (NET_ADMIN, NET_RAW) if bounding & (1 << cap)}
    assert held == ({NET_ADMIN, NET_RAW} if lab.vm(name).role == "gateway" else set()), f"{name}: {held}"


@pytest.mark.hosts("all")
def test_ipv6_is_off_and_root_cannot_turn_it_on(vm, name):
    """The firewall is IPv4; so is every VM: no IPv6 address, and no way for root to get one."""
    host = vm(name)
    host.run("echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6")
    assert host.check_output(
        "cat /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6"
    ).split() == ["1", "1"]
    assert host.check_output("ip -6 -o addr show") == ""


def test_an_office_cannot_take_another_offices_address(vm, lab, dev):
    """The attack of issue 11: Ａ市's terminal, as root, adds Ｂ町's terminal address, announces it
    with a raw ARP frame and asks the gateway for Ｂ町's registry from it. Each step is refused."""
    office, other = dev.municipalities[0], dev.municipalities[1]
    host = vm(f"{office.id}-terminal")
    own = str(office.terminal)
    iface = host.check_output(f"ip -o -4 addr show | awk '$4 ~ /^{own}\\// {{print $2}}'")
    assert iface, f"no interface holds {own}"
    added = host.run(f"ip addr add {other.terminal}/32 dev {iface}")
    assert added.rc != 0 and "Operation not permitted" in added.stderr, added
    assert str(other.terminal) not in host.check_output("ip -o -4 addr show")
    frame = host.run(
        f"python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW).bind((\"{iface}\", 0))'"
    )
    assert frame.rc != 0 and "PermissionError" in frame.stderr, frame
    service = lab.service_addresses[other.id]
    asked = host.run(
        f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 --interface {other.terminal} "
        f"-H 'Host: jumin.{other.id}.lgwan.test' 'https://{service}/api/residents?name=%E8%A8%93%E7%B7%B4'"
    )
    assert asked.stdout.strip() in ("", "000"), f"answered {asked.stdout}"  # curl cannot bind the address
