"""The Pulumi program, run under mocks: what it declares for the dev stack."""

from __future__ import annotations

import ipaddress

import pytest

from lgcloud.model.naming import PORTAL_API_PORT, PORTAL_PORT
from lgcloud.model.topology import plan

MUNICIPAL_ROLES = ("app", "db", "app-standby", "db-replica", "terminal")
SHARED_VMS = (
    "gateway",
    "gateway-standby",
    "monitor",
    "bastion",
    "backup",
    "chukan",
    "chukan-standby",
    "broker",
    "portal",
)
LABELS = ("lgcloud.stack", "lgcloud.site", "lgcloud.municipality", "lgcloud.role", "lgcloud.name")


def labels(resource) -> dict[str, str]:
    return {item["label"]: item["value"] for item in resource.inputs.get("labels", [])}


def segments_of(container) -> dict[str, str]:
    return {
        n["name"].removeprefix("lgcloud-dev-"): n.get("ipv4Address")
        for n in container.inputs.get("networksAdvanced", [])
    }


def test_one_vm_per_role_and_municipality(containers, dev):
    expected = {f"{m.id}-{role}" for m in dev.municipalities for role in MUNICIPAL_ROLES} | set(SHARED_VMS)
    assert set(containers) == expected, f"VMs declared: {sorted(containers)}"


def test_every_segment_of_the_design_exists(networks, dev):
    expected = {"mgmt", "lgwan", "ipvpn", "shared", "interconnect", "internet"}
    expected |= {f"{m.id}-{site}" for m in dev.municipalities for site in ("center", "backup")}
    assert set(networks) == expected, f"segments declared: {sorted(networks)}"


@pytest.mark.parametrize("kind", ["containers", "networks"])
def test_every_resource_carries_the_lab_labels(kind, request):
    for resource in request.getfixturevalue(kind).values():
        missing = [k for k in LABELS if not labels(resource).get(k)]
        assert not missing, f"{resource.name}: labels {missing} missing"
        assert labels(resource)["lgcloud.stack"] == "dev", f"{resource.name}: wrong stack label"


@pytest.mark.parametrize("segment", ["mgmt", "lgwan", "ipvpn", "shared", "interconnect"])
def test_closed_wide_segments_are_internal(networks, segment):
    assert networks[segment].inputs.get("internal") is True, f"{segment} must be internal"


def test_municipal_segments_are_internal(networks, dev):
    for m in dev.municipalities:
        for site in ("center", "backup"):
            assert networks[f"{m.id}-{site}"].inputs.get("internal") is True, f"{m.id}-{site} must be internal"


def test_segment_subnets_match_the_config(networks, dev):
    for key, network in networks.items():
        subnet = network.inputs["ipamConfigs"][0]["subnet"]
        assert str(plan(dev).segment(key).cidr) == subnet, f"{network.name}: subnet {subnet}"


@pytest.mark.parametrize("role", ["app", "db"])
def test_center_vms_sit_on_their_own_closed_segment_only(containers, dev, role):
    for m in dev.municipalities:
        vm = containers[f"{m.id}-{role}"]
        allowed = {"mgmt", f"{m.id}-center"} | ({"interconnect"} if role == "db" else set())
        assert set(segments_of(vm)) == allowed, f"{vm.name}: on {sorted(segments_of(vm))}"


def test_backup_vms_sit_on_the_backup_segment(containers, dev):
    for m in dev.municipalities:
        assert f"{m.id}-backup" in segments_of(containers[f"{m.id}-app-standby"])
        assert set(segments_of(containers[f"{m.id}-db-replica"])) == {"mgmt", f"{m.id}-backup", "interconnect"}


def test_terminal_sits_on_its_access_segment_with_the_declared_address(containers, dev):
    for m in dev.municipalities:
        terminal = segments_of(containers[f"{m.id}-terminal"])
        assert terminal.get(m.access) == str(m.terminal), f"{m.id}-terminal: {terminal}"
        assert not {"lgwan", "ipvpn"} - {m.access} & set(terminal), f"{m.id}-terminal on both WANs"


def test_no_vm_but_the_jointly_used_ones_joins_another_municipalitys_segment(containers, dev):
    """The gateways and the 中間サーバー are on every municipality's closed segments (their
    firewalls admit each municipality's own VMs only); nothing else is."""
    for vm in containers.values():
        if labels(vm)["lgcloud.role"] in ("gateway", "chukan"):
            continue
        foreign = {
            f"{m.id}-{site}"
            for m in dev.municipalities
            for site in ("center", "backup")
            if m.code != labels(vm)["lgcloud.municipality"]
        }
        reached = set(segments_of(vm)) & foreign
        assert not reached, f"{vm.name} reaches another municipality's segment: {reached}"


def test_the_wans_hold_the_gateways_and_each_office_on_its_own_access_only(containers, dev):
    access = {m.code: m.access for m in dev.municipalities}
    for vm in containers.values():
        wans = set(segments_of(vm)) & {"lgwan", "ipvpn"}
        role, municipality = labels(vm)["lgcloud.role"], labels(vm)["lgcloud.municipality"]
        # The 中間サーバー and the broker speak over LGWAN, as the national system is reached.
        expected = {
            "gateway": {"lgwan", "ipvpn"},
            "terminal": {access.get(municipality, "")},
            "chukan": {"lgwan"},
            "broker": {"lgwan"},
        }.get(role, set())
        assert wans == expected, f"{vm.name} ({role}) on the WANs {sorted(wans)}, expected {sorted(expected)}"


def test_nothing_in_a_my_number_segment_joins_internet(containers):
    for vm in containers.values():
        nets = set(segments_of(vm))
        closed = {n for n in nets if n.endswith(("-center", "-backup"))}
        assert not (closed and "internet" in nets), f"{vm.name} bridges a closed segment and internet"


def test_only_the_portal_and_the_brokers_read_api_are_on_internet(containers, dev):
    """三層分離: インターネット接続系 holds the portal, and the broker's one port for it, and nothing else."""
    on_internet = {name for name, vm in containers.items() if "internet" in segments_of(vm)}
    assert on_internet == {"portal", "broker"}, on_internet
    topology = plan(dev)
    portal = topology.vm("portal").addresses["internet"]
    assert topology.vm("broker").ingress["internet"] == (f"{portal}:{PORTAL_API_PORT}",)
    assert topology.vm("portal").ingress["internet"] == (f"0.0.0.0/0:{PORTAL_PORT}",)


def test_gateway_fronts_every_municipality(containers, dev):
    nets = set(segments_of(containers["gateway"]))
    assert {"lgwan", "ipvpn", "mgmt"} <= nets
    assert {f"{m.id}-center" for m in dev.municipalities} <= nets, f"gateway on {sorted(nets)}"


def test_limits_come_from_the_allocation(containers, dev):
    for vm in plan(dev).vms:
        inputs = containers[vm.name].inputs
        assert float(inputs["cpus"]) == vm.allocation.vcpus, f"{vm.name}: cpus {inputs['cpus']}"
        assert inputs["memory"] == vm.allocation.memory_mb, f"{vm.name}: memory {inputs['memory']}"


def test_no_vm_publishes_ports(containers):
    for vm in containers.values():
        assert not vm.inputs.get("ports"), f"{vm.name} publishes ports"
        assert not vm.inputs.get("publishAllPorts"), f"{vm.name} publishes all ports"


def test_addresses_lie_in_their_segments(containers, dev):
    topology = plan(dev)
    for vm in containers.values():
        for segment, address in segments_of(vm).items():
            assert ipaddress.IPv4Address(address) in topology.segment(segment).cidr, f"{vm.name}: {address}"


def test_vms_get_the_stack_key_and_firewall_policy(containers):
    for vm in containers.values():
        uploads = {u["file"]: u["content"] for u in vm.inputs.get("uploads", [])}
        assert uploads.get("/etc/lgcloud/authorized_keys", "").startswith("ssh-ed25519 "), vm.name
        assert any(e.startswith("LGCLOUD_INGRESS=") and "10.100.0.0/24=" in e for e in vm.inputs["envs"]), vm.name


def test_backup_vms_use_the_backup_sites_engine(containers):
    for vm in containers.values():
        site = labels(vm)["lgcloud.site"]
        expected = "backup-engine" if site == "backup" else "center-engine"
        assert f"pulumi:providers:docker::{expected}::" in vm.provider, f"{vm.name}: provider {vm.provider}"


def test_the_vms_that_hold_data_keep_it_on_a_volume_of_their_own(resources, containers, dev):
    volumes = {r.inputs["name"]: r for r in resources if r.typ == "docker:index/volume:Volume"}
    for vm in plan(dev).vms:
        mounted = {v["volumeName"]: v["containerPath"] for v in containers[vm.name].inputs.get("volumes", [])}
        if vm.data:
            volume = f"lgcloud-dev-{vm.name}-data"
            assert mounted == {volume: vm.data}, f"{vm.name}: mounts {mounted}"
            assert labels(volumes[volume])["lgcloud.name"] == vm.name, f"{volume}: labels"
            assert volumes[volume].provider == containers[vm.name].provider, f"{volume}: not on {vm.name}'s site"
        else:
            assert not mounted, f"{vm.name} holds no data but mounts {mounted}"
    assert {vm.role for vm in plan(dev).vms if vm.data} == {"db", "db-replica", "monitor", "backup", "broker", "portal"}
