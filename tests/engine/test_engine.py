"""The embedded engine on a real Docker Engine: idempotence, replacement, isolation of stacks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from lgcloud.state.directory import state_dir
from lgcloud.state.failover import Failover, forget_failovers, record_failover
from lgcloud.state.keys import ensure_keypair

from .conftest import lgcloud, stack_containers, stack_networks

pytestmark = pytest.mark.engine

SMALL_VMS = 14  # five for the municipality, nine for the shared base and the national site
SMALL_VOLUMES = 6  # the database pair, the monitor, the backup repository, the broker, the portal
SMALL_SEGMENTS = 8


def test_up_creates_the_stack_and_a_second_up_changes_nothing(stack, client):
    path = stack("enga", 102)
    first = lgcloud("up", "--file", str(path), "--json")
    outputs = json.loads(first.stdout)
    containers = stack_containers(client, "enga")
    assert len(containers) == SMALL_VMS and all(c.status == "running" for c in containers.values()), {
        n: c.status for n, c in containers.items()
    }
    assert len(stack_networks(client, "enga")) == SMALL_SEGMENTS
    assert outputs["vms"]["x-town-app"]["addresses"]["lgcloud-enga-x-town-center"] == "10.102.16.10"
    assert outputs["vms"]["x-town-app"]["id"] == containers["lgcloud-enga-x-town-app"].id

    second = lgcloud("up", "--file", str(path))
    assert "no changes" in second.stderr, second.stderr
    assert {n: c.id for n, c in stack_containers(client, "enga").items()} == {n: c.id for n, c in containers.items()}


def test_status_json_reports_every_vm_with_its_addresses(stack):
    path = stack("engs", 108)
    lgcloud("up", "--file", str(path))
    status = json.loads(lgcloud("status", "--file", str(path), "--json").stdout)
    vms = {v["name"]: v for v in status["vms"]}
    assert len(vms) == SMALL_VMS and {v["state"] for v in vms.values()} == {"running"}, vms
    assert vms["x-town-terminal"]["addresses"]["lgwan"] == "10.108.1.21"
    assert vms["x-town-db"]["site"] == "center" and vms["x-town-db-replica"]["site"] == "backup"


def test_a_changed_allocation_replaces_exactly_that_vm(stack, client):
    path = stack("engb", 103)
    lgcloud("up", "--file", str(path))
    before = {n: c.id for n, c in stack_containers(client, "engb").items()}

    def bigger_terminal(config):
        config["lgcloud:municipalities"][0]["allocation"] = {"terminal": {"vcpus": 0.75, "memory_mb": 640}}

    stack("engb", 103, bigger_terminal)
    preview = lgcloud("preview", "--file", str(path), "--json")
    assert "1 replace" in preview.stderr, preview.stderr
    planned = {c["name"] for c in json.loads(preview.stdout)["changes"] if c["action"] != "unchanged"}
    assert planned == {"lgcloud-engb-x-town-terminal"}, preview.stdout
    assert {n: c.id for n, c in stack_containers(client, "engb").items()} == before, "preview changed something"

    result = lgcloud("up", "--file", str(path))
    after = {n: c for n, c in stack_containers(client, "engb").items()}
    changed = {n for n in before if before[n] != after[n].id}
    assert changed == {"lgcloud-engb-x-town-terminal"}, f"replaced: {changed}\n{result.stderr}"
    terminal = after["lgcloud-engb-x-town-terminal"].attrs["HostConfig"]
    assert terminal["Memory"] == 640 * 2**20 and terminal["NanoCpus"] == 750_000_000, terminal


def test_removing_a_municipality_deletes_its_resources(stack, client):
    def two(config):
        second = dict(
            config["lgcloud:municipalities"][0],
            id="y-village",
            name="Ｙ村",
            code="133078",
            terminal="10.104.1.22",
            segments={"center": "10.104.18.0/24", "backup": "10.104.19.0/24"},
        )
        config["lgcloud:municipalities"].append(second)

    path = stack("engc", 104, two)
    lgcloud("up", "--file", str(path))
    assert len(stack_containers(client, "engc")) == SMALL_VMS + 5
    stack("engc", 104)  # back to one municipality
    lgcloud("up", "--file", str(path))
    names = set(stack_containers(client, "engc"))
    assert len(names) == SMALL_VMS and not any("y-village" in n for n in names), names
    assert not any("y-village" in n for n in stack_networks(client, "engc"))


def test_down_removes_its_stack_and_nothing_else(stack, client):
    ours, theirs = stack("engd", 105), stack("enge", 106)
    lgcloud("up", "--file", str(ours))
    lgcloud("up", "--file", str(theirs))
    # Something an operator made by hand, labelled like the stack but not made by lgcloud.
    bystander = client.containers.create("lgcloud/vm:latest", name="engd-bystander", labels={"lgcloud.stack": "engd"})
    try:
        lgcloud("down", "--file", str(ours))
        assert set(stack_containers(client, "engd")) == {"engd-bystander"}
        assert not stack_networks(client, "engd")
        assert len(stack_containers(client, "enge")) == SMALL_VMS
        assert all(c.status == "running" for c in stack_containers(client, "enge").values())
    finally:
        bystander.remove(force=True)


def test_a_stack_overlapping_a_running_one_is_refused(stack, client):
    running = stack("engf", 107)
    lgcloud("up", "--file", str(running))
    clash = stack("engg", 107)
    result = lgcloud("up", "--file", str(clash), check=False)
    assert result.returncode == 2, result.stderr
    assert "overlaps network lgcloud-engf-" in result.stderr and "lgcloud:segments.mgmt" in result.stderr
    assert not stack_networks(client, "engg") and not stack_containers(client, "engg"), "something was created"


def test_an_interrupted_up_is_completed_by_the_next_one(stack, client):
    path = stack("engh", 109)
    process = subprocess.Popen(
        [sys.executable, "-m", "lgcloud.cli", "up", "--file", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    # Interrupt as soon as the first segment exists: the VMs come after the segments.
    while not stack_networks(client, "engh") and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "interrupted" in err, err
    running = [c for c in stack_containers(client, "engh").values() if c.status == "running"]
    assert len(running) < SMALL_VMS, f"the interrupt came too late to test anything ({len(running)} VMs)"

    lgcloud("up", "--file", str(path))
    containers = stack_containers(client, "engh")
    assert len(containers) == SMALL_VMS and all(c.status == "running" for c in containers.values())


def test_a_vm_that_fails_to_start_leaves_a_stack_down_can_remove(stack, client, tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text('FROM lgcloud/vm:latest\nENTRYPOINT ["/bin/sh", "-c", "echo no disk >&2; exit 3"]\n')
    client.images.build(path=str(tmp_path), tag="lgcloud/test-broken:latest", rm=True)

    def broken_image(config):
        config["lgcloud:image"] = "lgcloud/test-broken:latest"

    path = stack("engi", 110, broken_image)
    result = lgcloud("up", "--file", str(path), check=False)
    assert result.returncode == 1 and "exited right after start (code 3)" in result.stderr, result.stderr
    assert "no disk" in result.stderr
    lgcloud("down", "--file", str(path))
    assert not stack_containers(client, "engi") and not stack_networks(client, "engi")


def test_a_missing_image_is_named(stack, client):
    def unknown(config):
        config["lgcloud:image"] = "lgcloud/nonexistent:1"

    result = lgcloud("up", "--file", str(stack("engj", 111, unknown)), check=False)
    assert result.returncode == 1 and "image lgcloud/nonexistent:1 is not on the engine" in result.stderr
    assert "make images" in result.stderr


def test_up_keeps_a_vm_a_failover_fenced_off(stack, client):
    path = stack("engk", 114)
    lgcloud("up", "--file", str(path))
    db = stack_containers(client, "engk")["lgcloud-engk-x-town-db"]
    db.kill()
    record_failover("engk", "x-town", Failover(time.time(), "db-loss", fenced=("x-town-db",)))
    try:
        result = lgcloud("up", "--file", str(path))
        db.reload()
        assert db.status == "exited", "up started a fenced database"
        assert "kept off, fenced by a failover: x-town-db" in result.stderr and "drill failback" in result.stderr
    finally:
        forget_failovers("engk")
    lgcloud("up", "--file", str(path))  # failed back: up starts it again
    db.reload()
    assert db.status == "running"


def db_file(client, stack: str, path: str) -> str:
    """A file on the stack's database VM, read through the engine (works while the VM is off)."""
    container = stack_containers(client, stack)[f"lgcloud-{stack}-x-town-db"]
    result = container.exec_run(["cat", path]) if container.status == "running" else None
    return result.output.decode().strip() if result and result.exit_code == 0 else ""


def test_a_database_vm_keeps_its_data_when_replaced_and_across_down_and_up(stack, client):
    path = stack("engl", 115)
    lgcloud("up", "--file", str(path))
    db = stack_containers(client, "engl")["lgcloud-engl-x-town-db"]
    assert db.exec_run(["sh", "-c", "echo 155 residents > /var/lib/postgresql/marker"]).exit_code == 0

    def bigger_db(config):
        config["lgcloud:municipalities"][0]["allocation"] = {"db": {"vcpus": 0.5, "memory_mb": 384}}

    stack("engl", 115, bigger_db)
    first = lgcloud("up", "--file", str(path))  # the replica now; its primary waits for the next run
    assert "waiting for the next run: x-town-db" in first.stderr, first.stderr
    assert stack_containers(client, "engl")["lgcloud-engl-x-town-db"].id == db.id, (
        "primary and replica replaced at once"
    )
    lgcloud("up", "--file", str(path))
    replaced = stack_containers(client, "engl")["lgcloud-engl-x-town-db"]
    assert replaced.id != db.id, "the allocation change did not replace the VM"
    assert db_file(client, "engl", "/var/lib/postgresql/marker") == "155 residents", "data lost on replacement"

    down = lgcloud("down", "--file", str(path))
    assert f"data kept on {SMALL_VOLUMES} volume(s)" in down.stderr and "lgcloud-engl-x-town-db-data" in down.stderr, (
        down.stderr
    )
    assert "lgcloud-engl-x-town-db-data" in {v.name for v in client.volumes.list()}
    lgcloud("up", "--file", str(path))
    assert db_file(client, "engl", "/var/lib/postgresql/marker") == "155 residents", "data lost across down and up"

    lgcloud("down", "--file", str(path), "--delete-data")
    assert not [v for v in client.volumes.list() if v.name.startswith("lgcloud-engl-")], "--delete-data kept volumes"


def test_a_database_that_kept_its_data_on_its_own_disk_has_it_carried_into_its_new_volume(stack, client):
    """A lab made before VMs had data volumes: its databases' clusters live in the container."""
    path = stack("engm", 116)
    lgcloud("up", "--file", str(path))
    name = "lgcloud-engm-x-town-db"
    old = stack_containers(client, "engm")[name]
    labels = {**old.labels, "lgcloud.engine.digest": "made-before-volumes"}
    old.remove(force=True)
    client.volumes.get("lgcloud-engm-x-town-db-data").remove()
    script = (
        "echo written before volumes > /var/lib/postgresql/marker; chown -R postgres:postgres /var/lib/postgresql;"
        " trap 'exit 0' TERM; sleep 600 & wait"
    )
    legacy = client.containers.run(
        "lgcloud/vm:latest",
        name=name,
        labels=labels,
        detach=True,
        network_mode="none",
        entrypoint=["/bin/sh", "-c", script],
    )
    time.sleep(1)

    lgcloud("up", "--file", str(path))
    new = stack_containers(client, "engm")[name]
    assert new.id != legacy.id
    assert [m["Name"] for m in new.attrs["Mounts"]] == ["lgcloud-engm-x-town-db-data"]
    assert db_file(client, "engm", "/var/lib/postgresql/marker") == "written before volumes"
    for directory, expected in (
        ("/var/lib/postgresql", "postgres 755"),
        ("/var/lib/postgresql/15/main", "postgres 700"),
    ):
        owner = new.exec_run(["stat", "-c", "%U %a", directory]).output.decode().strip()
        assert owner == expected, f"{directory} came over as {owner}"


def test_a_lab_whose_key_is_lost_is_refused_not_replaced(stack, client):
    """A fresh checkout (or a lost .lgcloud/<stack>) beside a lab made with another key."""
    path = stack("engn", 117)
    lgcloud("up", "--file", str(path))
    before = {n: c.id for n, c in stack_containers(client, "engn").items()}
    key = state_dir("engn") / "id_ed25519"
    aside = key.with_name("id_ed25519.aside")
    key.rename(aside)
    try:
        for verb in ("up", "preview"):
            result = lgcloud(verb, "--file", str(path), check=False)
            assert result.returncode == 2, result.stderr
            assert f"already has {SMALL_VMS} VMs and {SMALL_VOLUMES} data volumes" in result.stderr, result.stderr
            assert "holds no key for them" in result.stderr and "--delete-data" in result.stderr, result.stderr
        assert {n: c.id for n, c in stack_containers(client, "engn").items()} == before, "a refused up changed VMs"
    finally:
        aside.rename(key)
    assert "no changes" in lgcloud("up", "--file", str(path)).stderr


def test_a_lab_made_with_another_key_is_refused_not_replaced(stack, client):
    """Two checkouts of the same stack on one engine: the second one's key is not the lab's."""
    path = stack("engo", 118)
    lgcloud("up", "--file", str(path))
    before = {n: c.id for n, c in stack_containers(client, "engo").items()}
    directory = state_dir("engo")
    kept = {name: (directory / name).read_bytes() for name in ("id_ed25519", "id_ed25519.pub")}
    for name in kept:
        (directory / name).unlink()
    ensure_keypair("engo")  # what a second checkout would make
    try:
        for verb in ("up", "preview"):
            result = lgcloud(verb, "--file", str(path), check=False)
            assert result.returncode == 2, result.stderr
            assert "trusts another SSH key" in result.stderr and "another checkout made this lab" in result.stderr
        assert {n: c.id for n, c in stack_containers(client, "engo").items()} == before, "a refused up changed VMs"
    finally:
        for name, content in kept.items():
            (directory / name).write_bytes(content)
        (directory / "id_ed25519").chmod(0o600)
    assert "no changes" in lgcloud("up", "--file", str(path)).stderr
