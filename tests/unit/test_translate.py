"""The engine translates only the pulumi_docker inputs it understands and names any other."""

from __future__ import annotations

import pytest

from lgcloud.engine.translate import Unsupported, _digest, container_spec, network_spec, volume_spec

CONTAINER = {
    "name": "lgcloud-t-vm",
    "image": "lgcloud/vm:latest",
    "cpus": "0.5",
    "memory": 256,
    "networksAdvanced": [{"name": "lgcloud-t-mgmt", "ipv4Address": "10.9.0.10", "aliases": ["vm"]}],
}


def test_a_container_translates_to_limits_and_attachments():
    spec = container_spec("vm", CONTAINER)
    assert spec.nano_cpus == 500_000_000 and spec.mem_limit_mb == 256
    assert spec.attachments[0].ipv4_address == "10.9.0.10"


@pytest.mark.parametrize(
    "key, value",
    [("ports", [{"internal": 22, "external": 2222}]), ("privileged", True), ("devices", [{"hostPath": "/dev/kvm"}])],
)
def test_an_unknown_container_input_is_refused_by_name(key, value):
    with pytest.raises(Unsupported) as refused:
        container_spec("vm", {**CONTAINER, key: value})
    assert "docker:index/container:Container 'vm'" in str(refused.value)
    assert f"input {key!r}" in str(refused.value)


def test_an_unknown_nested_input_is_refused_by_name():
    with pytest.raises(Unsupported, match="input 'ipamConfigs\\[0\\].ipRange'"):
        network_spec("net", {"name": "n", "ipamConfigs": [{"subnet": "10.9.0.0/24", "ipRange": "10.9.0.0/25"}]})


def test_the_digest_follows_the_image_behind_the_tag():
    spec = container_spec("vm", CONTAINER)
    assert spec.digest("sha256:a") != spec.digest("sha256:b")
    assert spec.digest("sha256:a") == container_spec("vm", dict(CONTAINER)).digest("sha256:a")


def test_a_named_volume_is_mounted_and_a_host_path_refused():
    spec = container_spec("vm", {**CONTAINER, "volumes": [{"volumeName": "lgcloud-t-vm-data", "containerPath": "/d"}]})
    assert [(m.volume, m.path, m.read_only) for m in spec.mounts] == [("lgcloud-t-vm-data", "/d", False)]
    with pytest.raises(Unsupported, match="input 'hostPath'"):
        container_spec("vm", {**CONTAINER, "volumes": [{"hostPath": "/etc", "containerPath": "/x"}]})


def test_a_container_without_volumes_digests_as_before_volumes_were_known():
    """Otherwise the first `up` after the engine learnt volumes would replace every VM."""
    spec = container_spec("vm", CONTAINER)
    before = {k: v for k, v in spec.__dict__.items() if k != "mounts"}
    assert spec.digest("sha256:a") == _digest({**before, "image_id": "sha256:a"})


def test_a_volume_digests_what_it_is_made_with_not_its_labels():
    made = {"name": "v", "driver": "local", "labels": [{"label": "lgcloud.site", "value": "center"}]}
    relabelled = {**made, "labels": [{"label": "lgcloud.site", "value": "backup"}]}
    assert volume_spec("v", made).digest == volume_spec("v", relabelled).digest
    assert volume_spec("v", made).digest != volume_spec("v", {**made, "driverOpts": {"type": "tmpfs"}}).digest
