"""``lgcloud configure``: Ansible makes every VM what it is.

The inventory is generated from the live lab (the VMs the engine reports running) and the
stack's plan; the playbook, its roles and its module library live beside each other at the
project root. ansible-runner keeps its artifacts under the stack's state directory::

    lgcloud configure --stack dev --limit 'municipality_a_city'
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..engine import running_containers
from ..errors import OperatorError
from ..model.schema import StackConfig
from ..paths import PLAYBOOK, PROJECT_ROOT, ROLES_DIR
from ..state.clerks import first_clerks
from ..state.converged import Converged, converged, forget_converged, inputs_digest, record_converged
from ..state.directory import state_dir, write_atomic
from ..state.facts import record_facts
from ..state.hostkeys import another_key, known_hosts_path, pinned_host_keys
from ..state.keys import ensure_keypair
from ..state.secrets import stack_secrets
from .backup import certify
from .inventory import build_inventory
from .lab import Lab
from .offices import certify_front
from .portal import certify_portal

__all__ = ["ConfigureSummary", "HostResult", "configure"]

# A host's result line in an event's stdout: `changed: [host]`, alone or after the task's banner.
CHANGED_LINE = re.compile(r"^changed: ", re.MULTILINE)
# An unreachable host's message when OpenSSH refused its key: Mitogen's words, or OpenSSH's own.
HOST_KEY_REFUSED = re.compile(r"mismatching host key|REMOTE HOST IDENTIFICATION HAS CHANGED")
# VMs whose configured state is read at once (each over an SSH connection of its own).
STATE_READERS = 16
# Settings chosen for speed (see benchmarks/configure.py): parallel hosts, each at its own pace
# (strategy free), over Mitogen. Ansible alone starts a Python on the VM for every module run and a
# worker with an ssh client on this host for every task; Mitogen keeps one Python per VM for the
# whole run, reached over one OpenSSH connection, and runs each module in it. Its connections end
# with the run, so the next run exchanges keys again and a VM whose host key changed is sent nothing.
ANSIBLE_SETTINGS = {
    "ANSIBLE_FORKS": "25",
    "ANSIBLE_STRATEGY": "mitogen_free",
    # Mitogen's connect timeout covers the key exchange, the login and its Python's start: on a
    # loaded lab (159 VMs on 2 cores) Ansible's 10 s left hosts unreachable.
    "ANSIBLE_TIMEOUT": "60",
    # Host keys are checked against those `up` pinned (lgcloud.state.hostkeys), never added
    # (StrictHostKeyChecking in the ssh arguments, made per stack by _ssh_args).
    "ANSIBLE_HOST_KEY_CHECKING": "True",
    "ANSIBLE_GATHERING": "smart",
    "ANSIBLE_NOCOLOR": "True",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
}


def _strategies() -> str:
    """Where the installed Mitogen keeps its strategy plugins (found without importing Ansible)."""
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        raise OperatorError("Mitogen for Ansible is not installed", "run `make venv` to install lgcloud's dependencies")
    return str(Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy")


def _ssh_args(stack: str) -> str:
    """OpenSSH's options for every connection of a run: the key `up` pinned for each VM and no
    other, no compression (the segments are local)."""
    return " ".join(
        (
            "-o StrictHostKeyChecking=yes",
            f"-o UserKnownHostsFile={known_hosts_path(stack)} -o GlobalKnownHostsFile=/dev/null",
            "-o HostKeyAlgorithms=ssh-ed25519 -o IdentitiesOnly=yes",
        )
    )


def _ansible_home(stack: str) -> Path:
    """A home of Ansible's own for the stack (its local temporary files)."""
    home = state_dir(stack) / "ansible" / "home"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


@dataclass
class HostResult:
    """What one VM's run came to: task counts and, for failures, what went wrong."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConfigureSummary:
    """One configure run: runner's status and exit code, each host's result, where the artifacts are."""

    status: str
    rc: int
    hosts: dict[str, HostResult]
    artifacts: Path
    seconds: float
    check: bool = False
    # VMs not run: nothing they are configured from and nothing on them changed since their last run
    converged: frozenset[str] = frozenset()

    @property
    def succeeded(self) -> bool:
        return self.rc == 0

    def total(self, what: str) -> int:
        """The sum over every host of one count: ``ok``, ``changed``, ``failed`` or ``unreachable``."""
        return sum(getattr(result, what) for result in self.hosts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "rc": self.rc,
            "seconds": round(self.seconds, 2),
            "check": self.check,
            "hosts": {host: asdict(result) for host, result in self.hosts.items()},
            "converged": sorted(self.converged),
        }


def configure(
    cfg: StackConfig,
    running: set[str],
    limit: str | None = None,
    check: bool = False,
    on_event: Callable[[str, str, str], None] = lambda host, task, state: None,
    settings: dict[str, str] | None = None,
    full: bool = False,
) -> ConfigureSummary:
    """Run the site playbook on the stack's running VMs; report per host.

    A VM is skipped when the last successful run had the same inputs (inventory, secrets,
    playbook, roles, modules, settings) and the same containers, and the VM's configured state
    (files under the roles' trees, its services, its database's start) is what that run left.
    `full`, `check`, a `limit` and explicit `settings` run every VM they name."""
    started = time.monotonic()
    data_dir = state_dir(cfg.stack) / "ansible"
    (data_dir / "inventory").mkdir(parents=True, exist_ok=True)
    (data_dir / "env").mkdir(exist_ok=True)
    inventory = data_dir / "inventory" / "lab.yml"
    document = build_inventory(
        cfg, ensure_keypair(cfg.stack).private, running, certify(cfg), certify_front(cfg), certify_portal(cfg)
    )
    write_atomic(inventory, yaml.safe_dump(document, allow_unicode=True, sort_keys=False), 0o600)
    # Secrets reach Ansible through runner's extravars file, never a command line or a label.
    provided = first_clerks(cfg.stack, [m.id for m in cfg.municipalities])
    extravars = {
        **stack_secrets(cfg.stack).as_extravars(m.code for m in cfg.municipalities),
        "lgcloud_first_clerks": {m: [a.as_first_clerk() for a in accounts] for m, accounts in provided.items()},
    }
    extravars_text = json.dumps(extravars, ensure_ascii=False)
    write_atomic(data_dir / "env" / "extravars", extravars_text, 0o600)
    containers = {vm: cid for vm, cid in running_containers(cfg).items() if vm in running}
    inputs = inputs_digest((inventory.read_text(encoding="utf-8"), extravars_text), _code(), ANSIBLE_SETTINGS)
    last = converged(cfg.stack)
    unchanged: dict[str, str] = {}
    hosts_run = limit
    if not (full or check or limit or settings) and last and last.matches(inputs, containers):
        states = configured_states(cfg, set(containers))
        unchanged = {vm: state for vm, state in states.items() if state is not None and state == last.states.get(vm)}
        if len(unchanged) == len(containers):
            return ConfigureSummary(
                "converged", 0, {}, data_dir / "artifacts", time.monotonic() - started, converged=frozenset(unchanged)
            )
        if unchanged:
            hosts_run = ",".join(sorted(set(containers) - set(unchanged)))
    if not check:
        forget_converged(cfg.stack)  # until this run succeeds
    # Runner reads env/cmdline and env/envvars on every run, over what it is passed: a file left by
    # an earlier run or version would turn every later run into a check, or switch host key
    # checking off. Each run's settings are the ones below, passed whole.
    for stale in ("cmdline", "envvars"):
        (data_dir / "env" / stale).unlink(missing_ok=True)
    hosts: dict[str, HostResult] = defaultdict(HostResult)
    published: dict[str, Any] = {}  # what the roles handed over with set_stats
    current = {"task": ""}

    def handle(event: dict[str, Any]) -> bool:
        data = event.get("event_data", {})
        kind = event.get("event", "")
        if kind == "playbook_on_task_start":
            current["task"] = data.get("task", "")
        elif kind == "playbook_on_stats":
            published.update(data.get("artifact_data") or {})
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
            message = str(data.get("res", {}).get("msg", ""))
            if HOST_KEY_REFUSED.search(message):  # OpenSSH refused the key: say so plainly
                pinned = pinned_host_keys(cfg.stack).get(host)
                message = another_key(cfg.stack, host, pinned.address if pinned else "its mgmt address")
            result.failures.append(f"unreachable: {message}")
        elif state == "skipped":
            result.skipped += 1
        on_event(host, data.get("task", current["task"]), state)
        return True

    runner = _run(cfg, data_dir, inventory, hosts_run, check, settings, handle)
    if not check:
        record_facts(cfg.stack, published)
    # Recorded after a run of every VM, or of those that changed: not after a limited, checked or
    # failed one (the next run then runs every VM), nor a benchmark's settings.
    if runner.rc == 0 and not (check or settings or limit):
        states = configured_states(cfg, set(containers) - set(unchanged))
        read = {vm: state for vm, state in states.items() if state is not None}
        if len(read) == len(states):  # a VM whose state could not be read runs next time too
            record_converged(cfg.stack, Converged(inputs, containers, {**unchanged, **read}))
    return ConfigureSummary(
        runner.status,
        runner.rc,
        dict(hosts),
        Path(runner.config.artifact_dir),
        time.monotonic() - started,
        check,
        frozenset(unchanged),
    )


def _code() -> list[Path]:
    """The files a run executes: the playbook, the roles and the modules beside them."""
    files = [PROJECT_ROOT / PLAYBOOK]
    for tree in (ROLES_DIR, PROJECT_ROOT / "library"):
        files += [p for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


def configured_states(cfg: StackConfig, vms: set[str]) -> dict[str, str | None]:
    """Each VM's configured-state digest, read over SSH (None: not read, e.g. unreachable)."""

    def state(lab: Lab, vm: str) -> str | None:
        try:
            digest = lab.script(vm, "configured-state.sh", timeout=30).strip()
        except OperatorError:
            return None
        finally:
            lab.forget(vm)
        return digest if re.fullmatch(r"[0-9a-f]{64}", digest) else None

    with Lab(cfg) as lab, ThreadPoolExecutor(STATE_READERS) as pool:
        return dict(zip(sorted(vms), pool.map(lambda vm: state(lab, vm), sorted(vms)), strict=True))


def _run(
    cfg: StackConfig,
    data_dir: Path,
    inventory: Path,
    limit: str | None,
    check: bool,
    settings: dict[str, str] | None,
    handle: Callable[[dict], bool],
) -> Any:
    """One ansible-playbook run of site.yml through ansible-runner."""
    import ansible_runner  # imported by the verb that runs it only: it takes a while

    return ansible_runner.run(
        private_data_dir=str(data_dir),
        project_dir=str(PROJECT_ROOT),
        playbook=PLAYBOOK,
        inventory=str(inventory),
        limit=limit,
        cmdline="--check --diff" if check else None,
        envvars={
            **ANSIBLE_SETTINGS,
            **(settings or {}),
            "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
            "ANSIBLE_SSH_ARGS": _ssh_args(cfg.stack),
            "ANSIBLE_STRATEGY_PLUGINS": _strategies(),
            "HOME": str(_ansible_home(cfg.stack)),
            # ansible-playbook of the same environment as lgcloud, activated or not
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        },
        event_handler=handle,
        quiet=True,
        rotate_artifacts=5,
    )
