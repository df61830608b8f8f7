"""Small throwaway stacks for engine tests, on their own subnets beside any running `dev`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml

pytestmark = pytest.mark.engine

SMALL = {
    "config": {
        "lgcloud:sites": {
            "center": {"capacity": {"vcpus": 4, "memory_mb": 8192}},
            "backup": {"capacity": {"vcpus": 4, "memory_mb": 8192}},
        },
        "lgcloud:segments": {
            k: f"10.{{net}}.{i}.0/24"
            for i, k in enumerate(["mgmt", "lgwan", "ipvpn", "shared", "interconnect", "internet"])
        },
        "lgcloud:allocations": {"db": {"vcpus": 0.25, "memory_mb": 256}},
        "lgcloud:municipalities": [
            {
                "id": "x-town",
                "name": "Ｘ町",
                "code": "013315",
                "access": "lgwan",
                "systems": ["jumin"],
                "segments": {"center": "10.{net}.16.0/24", "backup": "10.{net}.17.0/24"},
                "terminal": "10.{net}.1.21",
            }
        ],
    }
}


def small_stack(directory: Path, stack: str, net: int, change=None) -> Path:
    """Write a one-municipality stack config named `stack` on 10.<net>.0.0/16."""
    document = json.loads(json.dumps(SMALL).replace("{net}", str(net)))
    if change:
        change(document["config"])
    path = directory / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def lgcloud(*args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", *args], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"lgcloud {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def stack_containers(client: docker.DockerClient, stack: str) -> dict[str, docker.models.containers.Container]:
    return {c.name: c for c in client.containers.list(all=True, filters={"label": f"lgcloud.stack={stack}"})}


def stack_networks(client: docker.DockerClient, stack: str) -> dict[str, docker.models.networks.Network]:
    return {n.name: n for n in client.networks.list(filters={"label": f"lgcloud.stack={stack}"})}


@pytest.fixture(scope="session")
def client():
    return docker.from_env()


@pytest.fixture
def stack(tmp_path, client, request):
    """A fresh small stack file; whatever the test leaves is brought down afterwards, its data
    volumes too (and any an earlier run left under the same name before it starts)."""
    made = []

    def make(name: str, net: int, change=None) -> Path:
        path = small_stack(tmp_path, name, net, change)
        if path not in made:
            lgcloud("down", "--file", str(path), "--delete-data", check=False)
            made.append(path)
        return path

    yield make
    for path in made:
        lgcloud("down", "--file", str(path), "--delete-data", check=False)
