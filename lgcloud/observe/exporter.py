"""The lgcloud exporter: lab-level facts for the monitor's Prometheus (prometheus-client).

It runs on the controller (the host that runs the engine) and listens on the mgmt segment's
first address, which the host's bridge holds, so the monitor reaches it over mgmt like any VM.
What it publishes, on every scrape:

- what each VM is allocated and what each site can hold (from the stack config);
- what each VM uses, read from its cgroup as a hypervisor would (`docker stats` reads the same
  counters): a VM's own node exporter sees the whole host's /proc, not its limits;
- every SLA target, per municipality and business system;
- the last result of each drill, from ``.lgcloud/<stack>/drills/latest-<scenario>.json``.

::

    lgcloud exporter --stack dev --detach   # what `make up` runs; --stop ends it
    curl -s http://10.100.0.1:9480/metrics | grep lgcloud_sla_rpo_seconds
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from ..errors import OperatorError
from ..model.naming import EXPORTER_PORT, NAME_LABEL, STACK_LABEL, municipality_ids
from ..model.schema import SLA_SERVICES, StackConfig, duration_seconds
from ..model.topology import plan
from ..state.cards import cards
from ..state.directory import state_dir
from ..state.slm import maintenance_windows

__all__ = [
    "LabCollector",
    "VmUsage",
    "cgroup_paths",
    "detach",
    "exporter_address",
    "read_drills",
    "serve",
    "stop",
    "usage_from_cgroup",
]

MIB = 1024 * 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class VmUsage:
    """What a VM has used so far: CPU seconds since it started, and memory in use now."""

    cpu_seconds: float
    memory_bytes: int


def cgroup_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller -> cgroup path, from the text of /proc/<pid>/cgroup (v1 and v2 lines).

    >>> cgroup_paths("4:memory:/docker/ab\\n2:cpu,cpuacct:/docker/ab\\n0::/docker/ab\\n")["cpuacct"]
    '/docker/ab'
    """
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else ["unified"]:
            paths[controller] = path
    return paths


def _stat(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def usage_from_cgroup(paths: dict[str, str], root: Path = CGROUP_ROOT) -> VmUsage:
    """A VM's CPU seconds and memory in use, the way `docker stats` counts memory: usage less
    the inactive page cache, which the kernel reclaims first."""
    if (root / "memory").is_dir() and "memory" in paths:  # cgroup v1
        cpu_ns = int((root / "cpuacct" / paths["cpuacct"].lstrip("/") / "cpuacct.usage").read_text())
        memory = root / "memory" / paths["memory"].lstrip("/")
        usage = int((memory / "memory.usage_in_bytes").read_text())
        inactive = _stat((memory / "memory.stat").read_text()).get("total_inactive_file", 0)
        return VmUsage(cpu_ns / 1e9, usage - inactive if inactive < usage else usage)
    group = root / paths["unified"].lstrip("/")  # cgroup v2
    cpu_us = _stat((group / "cpu.stat").read_text())["usage_usec"]
    usage = int((group / "memory.current").read_text())
    inactive = _stat((group / "memory.stat").read_text()).get("inactive_file", 0)
    return VmUsage(cpu_us / 1e6, usage - inactive if inactive < usage else usage)


def read_drills(directory: Path) -> list[dict[str, Any]]:
    """The last result of each drill scenario; an absent directory means no drill has run.
    A file that cannot be read is skipped (reported on stderr), never guessed at."""
    results: list[dict[str, Any]] = []
    if not directory.is_dir():
        return results
    for path in sorted(directory.glob("latest-*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(result, dict) or "scenario" not in result:
                raise ValueError("no 'scenario' key")
            results.append(result)
        except (OSError, ValueError) as exc:
            print(f"lgcloud exporter: skipping {path}: {exc}", file=sys.stderr)
    return results


def _timestamp(value: object) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class LabCollector(Collector):
    """Collects the lab's facts at each scrape; ``usage`` maps a VM's name to its usage now."""

    def __init__(self, cfg: StackConfig, drills: Path, usage: Callable[[], dict[str, VmUsage]] = dict):
        self.cfg = cfg
        self.topology = plan(cfg)
        self.drills = drills
        self.usage = usage

    def collect(self) -> Iterator:
        yield from self._allocation()
        yield from self._usage()
        yield from self._sla()
        yield from self._drills()
        yield from self._cards()
        yield from self._maintenance()

    def _maintenance(self) -> Iterable[GaugeMetricFamily]:
        """Planned work open now, per municipality it covers: an annotation for dashboards and rules."""
        active = GaugeMetricFamily(
            "lgcloud_maintenance_active",
            "1 while planned work covers the municipality (kind: operator, up, configure, restore, failback, drill).",
            labels=["municipality", "kind", "window"],
        )
        for w in maintenance_windows(self.cfg.stack):
            if w.end is None:
                for m in self.cfg.municipalities:
                    if w.covers(m.id):
                        active.add_metric([m.id, w.kind, str(w.id)], 1)
        yield active

    def _cards(self) -> Iterable[GaugeMetricFamily]:
        """公的個人認証's cards by issuing municipality: wrong PINs counted on them, locked ones."""
        failures = GaugeMetricFamily(
            "lgcloud_card_pin_failures",
            "Wrong PINs in a row on the municipality's cards (a right one resets a card's count).",
            labels=["municipality"],
        )
        locked = GaugeMetricFamily(
            "lgcloud_cards_locked", "The municipality's cards locked by wrong PINs.", labels=["municipality"]
        )
        held = cards(self.cfg.stack)
        for m in self.cfg.municipalities:
            own = [c for c in held if c.municipality == m.id]
            failures.add_metric([m.id], sum(c.pin_failures for c in own))
            locked.add_metric([m.id], sum(1 for c in own if c.locked))
        yield failures
        yield locked

    def _allocation(self) -> Iterable[GaugeMetricFamily]:
        ids = municipality_ids(self.cfg.municipalities)
        labels = ["vm", "site", "role", "municipality"]
        vcpus = GaugeMetricFamily("lgcloud_vm_allocated_vcpus", "Virtual CPUs a VM is allocated.", labels=labels)
        memory = GaugeMetricFamily("lgcloud_vm_allocated_memory_bytes", "Memory a VM is allocated.", labels=labels)
        for vm in self.topology.vms:
            values = [vm.name, vm.site, vm.role, ids[vm.municipality]]
            vcpus.add_metric(values, vm.allocation.vcpus)
            memory.add_metric(values, vm.allocation.memory_mb * MIB)
        capacity_vcpus = GaugeMetricFamily(
            "lgcloud_site_capacity_vcpus", "Virtual CPUs a site can hold.", labels=["site"]
        )
        capacity_memory = GaugeMetricFamily(
            "lgcloud_site_capacity_memory_bytes", "Memory a site can hold.", labels=["site"]
        )
        for site, spec in self.cfg.sites.items():
            capacity_vcpus.add_metric([site], spec.capacity.vcpus)
            capacity_memory.add_metric([site], spec.capacity.memory_mb * MIB)
        return [vcpus, memory, capacity_vcpus, capacity_memory]

    def _usage(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        ids = municipality_ids(self.cfg.municipalities)
        labels = ["vm", "site", "role", "municipality"]
        cpu = CounterMetricFamily("lgcloud_vm_cpu_seconds", "CPU time a VM has used, from its cgroup.", labels=labels)
        memory = GaugeMetricFamily(
            "lgcloud_vm_memory_used_bytes",
            "Memory a VM uses, from its cgroup (without inactive page cache).",
            labels=labels,
        )
        measured = self.usage()
        for vm in self.topology.vms:
            if vm.name in measured:
                values = [vm.name, vm.site, vm.role, ids[vm.municipality]]
                cpu.add_metric(values, measured[vm.name].cpu_seconds)
                memory.add_metric(values, measured[vm.name].memory_bytes)
        return [cpu, memory]

    def _sla(self) -> Iterable[GaugeMetricFamily]:
        labels = ["municipality", "code", "system", "system_name"]
        families = {
            "availability": GaugeMetricFamily(
                "lgcloud_sla_availability_ratio", "Contracted availability, as a ratio.", labels=labels
            ),
            "window": GaugeMetricFamily(
                "lgcloud_sla_window_seconds", "Period the availability is contracted over.", labels=labels
            ),
            "latency": GaugeMetricFamily(
                "lgcloud_sla_latency_p95_seconds", "Contracted 95th percentile latency.", labels=labels
            ),
            "rto": GaugeMetricFamily("lgcloud_sla_rto_seconds", "Recovery time objective.", labels=labels),
            "rpo": GaugeMetricFamily("lgcloud_sla_rpo_seconds", "Recovery point objective.", labels=labels),
        }
        for m in self.cfg.municipalities:
            for system in m.services:
                target = self.cfg.sla_for(m, system)
                values = [m.id, m.code, system, SLA_SERVICES[system]]
                families["availability"].add_metric(values, target.availability_percent / 100)
                families["window"].add_metric(values, duration_seconds(target.window))
                families["latency"].add_metric(values, target.latency_p95_ms / 1000)
                families["rto"].add_metric(values, target.rto_seconds)
                families["rpo"].add_metric(values, target.rpo_seconds)
        return families.values()

    def _drills(self) -> Iterable[GaugeMetricFamily]:
        known = {m.id for m in self.cfg.municipalities}
        passed = GaugeMetricFamily(
            "lgcloud_drill_passed", "1 when the scenario's last drill passed.", labels=["scenario"]
        )
        finished = GaugeMetricFamily(
            "lgcloud_drill_finished_timestamp_seconds", "When the scenario's last drill finished.", labels=["scenario"]
        )
        labels = ["scenario", "municipality", "code"]
        per_municipality = {
            "rto_seconds": GaugeMetricFamily(
                "lgcloud_drill_rto_seconds", "Recovery time measured in the scenario's last drill.", labels=labels
            ),
            "rpo_seconds": GaugeMetricFamily(
                "lgcloud_drill_rpo_seconds", "Data loss window measured in the scenario's last drill.", labels=labels
            ),
            "lost_writes": GaugeMetricFamily(
                "lgcloud_drill_lost_writes",
                "Acknowledged writes missing after the scenario's last drill.",
                labels=labels,
            ),
            "passed": GaugeMetricFamily(
                "lgcloud_drill_municipality_passed",
                "1 when the municipality passed the scenario's last drill.",
                labels=labels,
            ),
        }
        linkage = GaugeMetricFamily(
            "lgcloud_drill_linkage_rto_seconds",
            "Recovery time of 番号連携 in the scenario's last drill, as the requesting municipality's 税 saw it.",
            labels=labels,
        )
        for result in read_drills(self.drills):
            scenario = str(result["scenario"])
            watched = result.get("linkage")
            if isinstance(watched, dict) and watched.get("requester") in known:
                requester = self.cfg.municipality(str(watched["requester"]))
                rto = math.inf if watched.get("rto_seconds") is None else _number(watched.get("rto_seconds"))
                if rto is not None:
                    linkage.add_metric([scenario, requester.id, requester.code], rto)
            if isinstance(result.get("passed"), bool):
                passed.add_metric([scenario], float(result["passed"]))
            when = _timestamp(result.get("finished"))
            if when is not None:
                finished.add_metric([scenario], when)
            for entry in result.get("municipalities") or []:
                if not isinstance(entry, dict) or entry.get("id") not in known:
                    continue  # a municipality since removed from the stack is no longer held to anything
                values = [scenario, entry["id"], str(entry.get("code", ""))]
                for key, family in per_municipality.items():
                    value = (
                        float(entry[key])
                        if key == "passed" and isinstance(entry.get(key), bool)
                        else _number(entry.get(key))
                    )
                    if key == "rto_seconds" and key in entry and entry[key] is None:
                        value = math.inf  # the service did not come back within the drill: no finite RTO
                    if value is not None:
                        family.add_metric(values, value)
        return [passed, finished, *per_municipality.values(), linkage]


def _docker_usage(stack: str) -> Callable[[], dict[str, VmUsage]]:
    """Usage of the stack's running VMs, from their cgroups (found through each one's init PID)."""
    import docker

    client = docker.from_env()
    paths: dict[str, dict[str, str]] = {}  # container id -> cgroup paths; ids change on replace

    def usage() -> dict[str, VmUsage]:
        measured = {}
        for container in client.containers.list(filters={"label": f"{STACK_LABEL}={stack}"}):
            name, key = container.labels.get(NAME_LABEL, ""), str(container.id)
            try:
                if key not in paths:
                    pid = container.attrs["State"]["Pid"]
                    paths[key] = cgroup_paths(Path(f"/proc/{pid}/cgroup").read_text())
                measured[name] = usage_from_cgroup(paths[key])
            except (OSError, KeyError, ValueError):
                paths.pop(key, None)  # stopped between the listing and the read
        return measured

    return usage


def exporter_address(cfg: StackConfig) -> str:
    """The controller's address on mgmt (the host's end of it), where the monitor finds us."""
    return plan(cfg).controller


def _pid_file(stack: str) -> Path:
    return state_dir(stack) / "exporter.pid"


def only_from(allowed: set[str], app: Callable) -> Callable:
    """A WSGI app that answers the clients at `allowed` addresses and refuses everyone else with 403.

    The exporter listens on mgmt, where every VM has a port: only the monitor (and the host) may read it."""

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REMOTE_ADDR") not in allowed:
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"the lgcloud exporter answers its stack's monitor only\n"]
        return app(environ, start_response)

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no line per scrape
        pass


def serve(cfg: StackConfig, port: int = EXPORTER_PORT) -> None:
    """Serve the lab's metrics to the monitor until interrupted (the foreground form of the exporter)."""
    from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

    registry = CollectorRegistry()
    registry.register(LabCollector(cfg, state_dir(cfg.stack) / "drills", _docker_usage(cfg.stack)))
    address = exporter_address(cfg)
    allowed = {plan(cfg).vm("monitor").addresses["mgmt"], address}
    try:
        server = make_server(
            address, port, only_from(allowed, make_wsgi_app(registry)), ThreadingWSGIServer, _QuietHandler
        )
    except OSError as exc:
        raise OperatorError(
            f"cannot listen on {address}:{port} ({exc.strerror})",
            f"is stack {cfg.stack} up (`lgcloud up --stack {cfg.stack}`), or another exporter already on that port?",
        ) from None
    print(f"lgcloud exporter of stack {cfg.stack} on http://{address}:{port}/metrics", file=sys.stderr, flush=True)
    server.serve_forever()


def _running(stack: str) -> int | None:
    try:
        pid = int(_pid_file(stack).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"exporter" in cmdline and stack.encode() in cmdline else None


def stop(stack: str) -> bool:
    """End the stack's detached exporter, if one runs; True when one was ended."""
    pid = _running(stack)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    _pid_file(stack).unlink(missing_ok=True)
    return True


def detach(cfg: StackConfig, port: int = EXPORTER_PORT, timeout: float = 10.0) -> int:
    """(Re)start the exporter in the background, its log in the stack's state directory; wait
    until it answers. Restarting picks up a changed stack config."""
    import urllib.request

    stop(cfg.stack)
    log = state_dir(cfg.stack) / "exporter.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lgcloud.cli", "exporter", "--stack", cfg.stack, "--port", str(port)],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(cfg.stack).write_text(str(proc.pid))
    url = f"http://{exporter_address(cfg)}:{port}/metrics"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OperatorError("the exporter exited at once", f"see {log}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc.pid
        except OSError:
            time.sleep(0.2)
    raise OperatorError(f"the exporter does not answer on {url} after {timeout:.0f} s", f"see {log}")
