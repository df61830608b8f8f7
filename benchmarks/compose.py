"""A docker compose file for a stack's topology: the peer `lgcloud up` is measured against.

    /tmp/venv/bin/python benchmarks/compose.py --stack dev --octet 111 --project composedev > compose.yml

It is built from the same plan (:func:`lgcloud.topology.plan`) and the same ingress policy as the
Pulumi program, moved to another 10.<octet>/16 and other names so it can run beside the stack.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from lgcloud.model.config import parse, read_file, stack_file, stack_name
from lgcloud.model.schema import StackConfig
from lgcloud.model.topology import Topology, plan
from lgcloud.program.vm import ingress_policy
from lgcloud.state.keys import ensure_keypair

__all__ = ["compose", "compose_command", "load", "readdress"]


def readdress(value: Any, octet: int) -> Any:
    """`value` with every 10.X.… address or CIDR in it moved to 10.<octet>.…"""
    if isinstance(value, str):
        return re.sub(r"^10\.\d{1,3}\.", f"10.{octet}.", value)
    if isinstance(value, dict):
        return {k: readdress(v, octet) for k, v in value.items()}
    if isinstance(value, list):
        return [readdress(v, octet) for v in value]
    return value


def load(path: Path, octet: int) -> StackConfig:
    """The stack config at `path`, readdressed and validated like any stack."""
    return parse(readdress(read_file(path), octet), stack_name(path), str(path))


def compose(topology: Topology, image: str, public_key: Path, project: str) -> dict[str, Any]:
    """One service per VM and one network per segment, as lgcloud's program declares them."""
    networks = {
        s.key: {
            "name": f"{project}-{s.key}",
            "driver": "bridge",
            "internal": s.internal,
            "ipam": {"config": [{"subnet": str(s.cidr), "gateway": s.router}]},
        }
        for s in topology.segments
    }
    services = {
        vm.name: {
            "container_name": f"{project}-{vm.name}",
            "hostname": vm.name,
            "image": image,
            "cpus": vm.allocation.vcpus,
            "mem_limit": f"{vm.allocation.memory_mb}m",
            "cap_add": ["NET_ADMIN"],
            "environment": {"LGCLOUD_INGRESS": ingress_policy(vm, topology)},
            "volumes": [f"{public_key}:/etc/lgcloud/authorized_keys:ro"],
            "restart": "no",
            "networks": {key: {"ipv4_address": address, "aliases": [vm.name]} for key, address in vm.addresses.items()},
        }
        for vm in topology.vms
    }
    # 2.4 is the last format docker-compose 1.x reads with cpus/mem_limit; compose v2 reads it too.
    return {"version": "2.4", "services": services, "networks": networks}


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) where installed, else Debian's docker-compose 1.x."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise SystemExit("no docker compose: `apt-get install docker-compose`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev", help="stacks/Pulumi.<stack>.yaml (default: dev)")
    parser.add_argument("--file", help="a stack config file instead of --stack")
    parser.add_argument("--octet", type=int, default=111, help="second octet of the compose copy (default: 111)")
    parser.add_argument("--project", help="compose project name, prefix of every name (default: compose<stack>)")
    args = parser.parse_args(argv)
    cfg = load(Path(args.file) if args.file else stack_file(args.stack), args.octet)
    document = compose(plan(cfg), cfg.image, ensure_keypair(cfg.stack).public, args.project or f"compose{cfg.stack}")
    yaml.safe_dump(document, sys.stdout, allow_unicode=True, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
