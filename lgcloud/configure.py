"""``lgcloud configure``: Ansible makes every VM what it is.

The inventory is generated from the live lab (the VMs the engine reports running) and the
stack's plan; playbooks and roles live beside each other at the project root. ansible-runner
keeps its artifacts under the stack's state directory::

    lgcloud configure --stack dev --limit 'municipality_a_city'
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from .config import PROJECT_ROOT, StackConfig
from .exporter import EXPORTER_PORT
from .keys import ensure_keypair, state_dir
from .topology import Topology, plan

__all__ = ["HostResult", "Outcome", "build_inventory", "configure", "stack_secrets", "summarise"]

PLAYBOOK = "site.yml"
# A host's result line in an event's stdout: `changed: [host]`, alone or after the task's banner.
CHANGED_LINE = re.compile(r"^changed: ", re.MULTILINE)
# Settings chosen for speed (see benchmarks/configure.py): parallel hosts, one SSH round trip
# per task, facts gathered once and cached for the run.
ANSIBLE_SETTINGS = {
    "ANSIBLE_FORKS": "25",
    "ANSIBLE_PIPELINING": "True",
    "ANSIBLE_HOST_KEY_CHECKING": "False",
    "ANSIBLE_GATHERING": "smart",
    "ANSIBLE_NOCOLOR": "True",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_PARAMIKO_LOOK_FOR_KEYS": "False",
    # No pseudo-terminal per command: one thing less for the VM's sshd to set up, and a script's
    # stderr stays out of the stdout the roles read.
    "ANSIBLE_PARAMIKO_PTY": "False",
}


def _group(name: str) -> str:
    return name.replace("-", "_")


def stack_secrets(stack: str) -> dict[str, str]:
    """Passwords of the stack, generated once and kept in its state directory (mode 0600)."""
    path = state_dir(stack) / "secrets.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    wanted = ["postgresql_replication_password", "jumin_db_password"]
    if any(key not in known for key in wanted):
        known = {**{key: secrets.token_urlsafe(24) for key in wanted}, **known}
        path.touch(mode=0o600)
        path.write_text(json.dumps(known, indent=2))
    return known


def _municipalities(cfg: StackConfig, topology: Topology) -> list[dict]:
    """What roles need to know of each municipality, in one structure shared by all hosts."""
    described = []
    for m in cfg.municipalities:
        vm = {role: topology.vm(f"{m.id}-{role}") for role in ("app", "app-standby", "db", "db-replica")}
        described.append({
            "id": m.id, "group": _group(m.id), "code": m.code, "name": m.name, "access": m.access,
            "gateway": topology.vm("gateway").addresses[m.access],
            "gateway_standby": topology.vm("gateway-standby").addresses[m.access],
            "service_address": topology.service_addresses[m.id],
            "systems": list(m.systems), "replication": m.replication, "terminal": str(m.terminal),
            "app": vm["app"].addresses[f"{m.id}-center"],
            "app_standby": vm["app-standby"].addresses[f"{m.id}-backup"],
            "db": vm["db"].addresses[f"{m.id}-center"],
            "db_interconnect": vm["db"].addresses["interconnect"],
            "db_replica": vm["db-replica"].addresses[f"{m.id}-backup"],
            "db_replica_interconnect": vm["db-replica"].addresses["interconnect"],
        })
    return described


def build_inventory(cfg: StackConfig, running: set[str] | None = None) -> dict:
    """An Ansible YAML inventory of the stack's VMs, grouped by site, role and municipality."""
    topology = plan(cfg)
    codes = {m.code: m.id for m in cfg.municipalities}
    key = ensure_keypair(cfg.stack).private
    groups: dict[str, dict] = defaultdict(lambda: {"hosts": {}})
    hosts = {}
    for vm in topology.vms:
        if running is not None and vm.name not in running:
            continue
        hosts[vm.name] = {
            "ansible_host": vm.addresses["mgmt"],
            "lgcloud_vm": vm.name, "lgcloud_role": vm.role, "lgcloud_site": vm.site,
            "lgcloud_municipality": codes.get(vm.municipality, "shared"),
            "lgcloud_addresses": vm.addresses,
        }
        # Prefixed so that no group shares a name with a VM (the VM `gateway`, the role group `role_gateway`).
        membership = [f"site_{vm.site}", f"role_{_group(vm.role)}"]
        if vm.municipality in codes:
            membership.append(f"municipality_{_group(codes[vm.municipality])}")
        for group in membership:
            groups[group]["hosts"][vm.name] = None
    return {"all": {
        "hosts": hosts,
        "vars": {
            "ansible_user": "root", "ansible_connection": "paramiko",
            "ansible_ssh_private_key_file": str(key), "ansible_python_interpreter": "/usr/bin/python3",
            "lgcloud_stack": cfg.stack, "lgcloud_mgmt_cidr": str(cfg.segments.mgmt),
            "lgcloud_interconnect_cidr": str(cfg.segments.interconnect),
            "lgcloud_controller": str(cfg.segments.mgmt.network_address + 1),
            "lgcloud_exporter_port": EXPORTER_PORT,  # `lgcloud exporter` on the controller
            "lgcloud_monitor": topology.vm("monitor").addresses["mgmt"],
            "lgcloud_municipalities": _municipalities(cfg, topology),
        },
        "children": dict(groups),
    }}


@dataclass
class HostResult:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    status: str
    rc: int
    hosts: dict[str, HostResult]
    artifacts: Path
    seconds: float


def configure(cfg: StackConfig, running: set[str], limit: str | None = None, check: bool = False,
              on_event: Callable[[str, str, str], None] = lambda host, task, state: None,
              settings: dict[str, str] | None = None) -> Outcome:
    """Run the site playbook on the stack's running VMs; report per host."""
    import time

    import ansible_runner

    started = time.monotonic()
    data_dir = state_dir(cfg.stack) / "ansible"
    (data_dir / "inventory").mkdir(parents=True, exist_ok=True)
    inventory = data_dir / "inventory" / "lab.yml"
    inventory.write_text(yaml.safe_dump(build_inventory(cfg, running), allow_unicode=True, sort_keys=False))
    # Secrets reach Ansible through runner's extravars file, never a command line or a label.
    extravars = data_dir / "env" / "extravars"
    extravars.parent.mkdir(exist_ok=True)
    extravars.touch(mode=0o600)
    extravars.write_text(json.dumps(stack_secrets(cfg.stack)))
    # Runner writes a run's cmdline to env/cmdline once and reads it on every later run that passes
    # none: without this, the runs after a `--check` would all be checks too.
    (data_dir / "env" / "cmdline").unlink(missing_ok=True)
    hosts: dict[str, HostResult] = defaultdict(HostResult)
    current = {"task": ""}

    def handle(event: dict) -> bool:
        data = event.get("event_data", {})
        kind = event.get("event", "")
        if kind == "playbook_on_task_start":
            current["task"] = data.get("task", "")
        host = data.get("host")
        if not host or not kind.startswith("runner_on_"):
            return True
        result = hosts[host]
        state = kind.removeprefix("runner_on_")
        if state == "ok":
            result.ok += 1
            # A no_log task's result is censored, changed flag included; its stdout line is not (after
            # the task's banner, which a free strategy prints with each host's result).
            if data.get("res", {}).get("changed") or CHANGED_LINE.search(event.get("stdout", "")):
                result.changed += 1
                state = "changed"
        elif state == "failed" and not data.get("ignore_errors"):
            result.failed += 1
            message = data.get("res", {}).get("msg") or data.get("res", {}).get("stderr") or ""
            result.failures.append(f"{data.get('task')}: {str(message).strip()[:400]}")
        elif state == "unreachable":
            result.unreachable += 1
            result.failures.append(f"unreachable: {data.get('res', {}).get('msg', '')}")
        elif state == "skipped":
            result.skipped += 1
        on_event(host, data.get("task", current["task"]), state)
        return True

    runner = ansible_runner.run(
        private_data_dir=str(data_dir), project_dir=str(PROJECT_ROOT), playbook=PLAYBOOK,
        inventory=str(inventory), limit=limit, cmdline="--check --diff" if check else None,
        envvars={**ANSIBLE_SETTINGS, **(settings or {}), "ANSIBLE_ROLES_PATH": str(PROJECT_ROOT / "roles"),
                 # ansible-playbook of the same environment as lgcloud, activated or not
                 "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
        event_handler=handle, quiet=True, rotate_artifacts=5,
    )
    artifacts = Path(runner.config.artifact_dir)
    return Outcome(runner.status, runner.rc, dict(hosts), artifacts, time.monotonic() - started)


def summarise(outcome: Outcome) -> Counter:
    totals: Counter = Counter()
    for result in outcome.hosts.values():
        totals.update({"ok": result.ok, "changed": result.changed, "failed": result.failed,
                       "unreachable": result.unreachable})
    return totals
