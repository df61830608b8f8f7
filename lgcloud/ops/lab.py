"""The running lab as an operation sees it: VMs (containers), their shells over SSH, their databases.

Drills, backups and restores act where an operator would: on the sites' hypervisors (the Docker
Engines) for what a VM cannot do to itself — killing it, cutting its network ports, writing to the
disk of a stopped VM — and inside the VMs over SSH on mgmt (paramiko, one kept-open session per VM)
for the rest.
"""

from __future__ import annotations

import io
import shlex
import socket
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
import paramiko
from docker.models.containers import Container
from docker.models.networks import Network

from ..engine.realise import connect
from ..errors import OperatorError
from ..model.naming import (
    NAME_LABEL,
    SITE_LABEL,
    STACK_LABEL,
    endpoint_or_default,
    replica_slot,
    segment_resource,
    service_url,
    vm_resource,
)
from ..model.schema import Municipality, StackConfig
from ..model.topology import Topology, VmPlan, plan
from ..state.hostkeys import another_key, known_hosts_path, pin_host_keys
from ..state.hostkeys import pinned_host_keys as _pinned
from ..state.keys import ensure_keypair
from ..state.secrets import stack_secrets
from .access import VmAccess, archived_file, read_host_key

__all__ = ["SCRIPTS", "Lab", "LabError", "Pair"]

SCRIPTS = Path(__file__).with_name("files")  # what operations run on the VMs
PG_BIN = "/usr/lib/postgresql/15/bin"
PG_DATA = "/var/lib/postgresql/15/main"
REPLICATION_USER = "replicator"  # roles/postgresql/defaults/main.yml
# sshd runs at most 10 sessions on one connection (MaxSessions) and refuses the 11th channel. The
# lab keeps one connection per VM, so commands beyond this many on one VM wait for a channel.
CHANNELS_PER_VM = 8
# A channel refused anyway (sshd busy starting sessions) is opened again after these pauses: the
# command never started, so trying again cannot run it twice.
CHANNEL_RETRIES = (0.1, 0.3, 1.0)


def _cgroup_of(pid: int) -> Path | None:
    """The unified (v2) control group of a process, where this kernel mounts it; None if the
    process is gone or the kernel has no v2 group for it."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        if line.startswith("0::"):
            for mount in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):  # a hybrid host, a v2 host
                group = mount / line[3:].lstrip("/")
                if (group / "cgroup.kill").exists():
                    return group
    return None


# A VM's share of the cores while others want them, as the kernel's cpu controller counts it:
# (file, the default every VM has, a sixteenth of it for a VM that yields) for a v1 and a v2
# group. Not the least there is: a database rebuilt while it yields must still keep its timeouts.
_CPU_SHARES = {"v1": ("cpu.shares", 1024, 64), "v2": ("cpu.weight", 100, 6)}


def _cpu_share_of(pid: int) -> tuple[Path, int, int] | None:
    """The file holding a process's share of the cores, its default and its yielding share; None if the
    process is gone or its cpu controller is not where this kernel usually mounts it."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            name, normal, low = _CPU_SHARES["v1"]
            found = Path("/sys/fs/cgroup", controllers) / path.lstrip("/") / name
            if found.exists():
                return found, normal, low
    group = _cgroup_of(pid)
    name, normal, low = _CPU_SHARES["v2"]
    if group is not None and (group / name).exists():
        return group / name, normal, low
    return None


class LabError(OperatorError):
    """The lab is not in a state the operation can work from; the message says what to do."""


@dataclass(frozen=True)
class Pair:
    """One municipality's database pair and the names around it."""

    id: str
    code: str
    name: str
    replication: str
    db: str  # VM names
    replica: str
    app: str
    app_standby: str
    terminal: str
    slot: str  # replication slot and application_name of whichever side is the standby
    service_address: str
    url: str  # what the office uses

    @classmethod
    def of(cls, m: Municipality, topology: Topology) -> Pair:
        return cls(
            m.id,
            m.code,
            m.name,
            m.replication,
            f"{m.id}-db",
            f"{m.id}-db-replica",
            f"{m.id}-app",
            f"{m.id}-app-standby",
            f"{m.id}-terminal",
            replica_slot(m.id),
            topology.service_addresses[m.id],
            service_url("jumin", m.id),
        )


class Lab:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.topology: Topology = plan(cfg)
        self.stack = cfg.stack
        # One client per site endpoint; both are the local engine unless the stack says otherwise.
        self._engines = {site: connect(endpoint_or_default(spec.endpoint)) for site, spec in cfg.sites.items()}
        # Sites whose engine runs on this machine: their VMs' processes are this kernel's to see.
        self._local = {site for site, spec in cfg.sites.items() if endpoint_or_default(spec.endpoint) is None}
        self._key = paramiko.Ed25519Key.from_private_key_file(str(ensure_keypair(cfg.stack).private))
        self._sessions: dict[str, paramiko.SSHClient] = {}
        self._channels: dict[str, threading.BoundedSemaphore] = {}
        self._connecting: dict[str, threading.Lock] = {}
        self._cgroups: dict[str, Path] = {}  # VM -> its control group on this kernel (`locate`)
        self._lock = threading.Lock()
        self.pairs = {m.id: Pair.of(m, self.topology) for m in cfg.municipalities}

    def pair(self, municipality: str) -> Pair:
        """The pair of a municipality named by id or 地方公共団体コード."""
        return self.pairs[self.cfg.municipality_named(municipality).id]

    # --- the hypervisor's view ---

    def plan(self, vm: str) -> VmPlan:
        """A VM of the stack, a restore VM included."""
        for found in (*self.topology.vms, *self.topology.restore_vms):
            if found.name == vm:
                return found
        raise LabError(f"no VM {vm!r} in stack {self.stack}")

    def _engine_site(self, site: str) -> str:
        return site if site in self._engines else "center"  # offices live with the center

    def _engine_of(self, vm: str) -> docker.DockerClient:
        """The engine of the VM's site."""
        return self._engines[self._engine_site(self.plan(vm).site)]

    def container(self, vm: str) -> Container:
        try:
            return self._engine_of(vm).containers.get(vm_resource(self.stack, vm))
        except docker.errors.NotFound:
            raise LabError(f"VM {vm} does not exist; run `lgcloud up --stack {self.stack}`") from None

    def running(self, vm: str) -> bool:
        c = self.container(vm)
        c.reload()
        return c.status == "running"

    def running_vms(self, site: str) -> set[str]:
        """The VMs of a site that run now, in one question to its hypervisor (which answers it
        from its own records even while it is busy stopping them)."""
        engine = self._engines[self._engine_site(site)]
        found = engine.api.containers(filters={"label": [f"{STACK_LABEL}={self.stack}", f"{SITE_LABEL}={site}"]})
        return {c["Labels"][NAME_LABEL] for c in found if c["Labels"].get(NAME_LABEL)}

    # --- power, as the kernel of this machine sees it ---
    #
    # The engine's own record lags a VM killed a moment ago by seconds, and while it tears a lost
    # site's ports down it answers a question about one VM (an inspect) only after that VM's
    # teardown. On a site whose engine runs on this machine, a VM's control group is the
    # hypervisor's own account of its processes: read from this kernel, it answers at once.

    def locate(self, vms: list[str]) -> None:
        """Find the control groups of the running VMs among `vms` now, while their engine answers
        at once; `powered_off` and `power_cut` then need no engine for them."""
        with ThreadPoolExecutor(min(16, max(1, len(vms)))) as pool:
            list(pool.map(self._cgroup, vms))

    def _cgroup(self, vm: str) -> Path | None:
        """The VM's control group on this kernel; None when its engine runs on another machine, it
        does not run, or the kernel has no group to kill it by. Found once, from the VM's first
        process, and kept: a VM powered on again keeps its container, and so its group."""
        with self._lock:
            if vm in self._cgroups:
                return self._cgroups[vm]
        if self._engine_site(self.plan(vm).site) not in self._local:
            return None
        state = self.container(vm).attrs["State"]
        group = _cgroup_of(state["Pid"]) if state["Status"] == "running" else None
        if group is not None:
            with self._lock:
                self._cgroups[vm] = group
        return group

    def powered_off(self, vm: str) -> bool:
        """Whether the VM is off: no process left in its control group (this machine's engine),
        or not running by its engine's record (another machine's)."""
        group = self._cgroup(vm)
        if group is None:
            return not self.running(vm)
        try:
            return "populated 0" in (group / "cgroup.events").read_text()
        except FileNotFoundError:  # the engine has removed it: the VM is off
            return True

    def power_cut(self, vms: list[str]) -> float:
        """Power off all of `vms` at one instant, as a site's power loss would: every process of
        each VM killed by this kernel at once (`cgroup.kill`), no engine asked; a VM whose engine
        runs on another machine (or without such a group) is killed through its engine, all in
        parallel. The instant (epoch s)."""
        self.locate(vms)
        found = {vm: self._cgroup(vm) for vm in vms}
        groups = [g for g in found.values() if g is not None]
        elsewhere = [vm for vm, g in found.items() if g is None]
        instant = time.time()
        for group in groups:
            try:
                (group / "cgroup.kill").write_text("1")
            except FileNotFoundError:  # removed by its engine: off already
                pass
        if elsewhere:
            with ThreadPoolExecutor(len(elsewhere)) as killers:
                list(killers.map(self.kill, elsewhere))
        for vm in vms:
            self.forget(vm)
        return instant

    def wait_off(self, vm: str, timeout: float = 5.0) -> bool:
        """Whether the VM is off within `timeout` (a process in the middle of a disk write dies
        when the write ends)."""
        deadline = time.monotonic() + timeout
        while not self.powered_off(vm):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def yield_cores(self, vms: list[str], yielding: bool) -> None:
        """Give the running VMs among `vms` a sixteenth of their share of this machine's cores while
        other VMs want them (`yielding`), or their normal share back: a site booting again does not take
        the cores of the site serving meanwhile. The kernel keeps it until the VM's next boot;
        a VM whose engine runs on another machine is left as it is."""
        for vm in vms:
            share = self._cpu_share(vm)
            if share is not None:
                path, normal, low = share
                try:
                    path.write_text(str(low if yielding else normal))
                except FileNotFoundError:  # stopped meanwhile: it boots with the normal share
                    pass

    def yielding(self, vm: str) -> bool:
        """Whether the VM runs with less than its normal share of the cores (`yield_cores`)."""
        share = self._cpu_share(vm)
        return share is not None and int(share[0].read_text()) < share[1]

    def _cpu_share(self, vm: str) -> tuple[Path, int, int] | None:
        """The running VM's share of the cores on this machine (`_cpu_share_of`); None elsewhere."""
        if self._engine_site(self.plan(vm).site) not in self._local:
            return None
        state = self.container(vm).attrs["State"]
        return _cpu_share_of(state["Pid"]) if state["Status"] == "running" else None

    def wait_stopped(self, vm: str, timeout: float = 60) -> None:
        """Until the VM's engine records it stopped (it lags a VM powered off by `power_cut`)."""
        deadline = time.monotonic() + timeout
        while self.running(vm):
            if time.monotonic() > deadline:
                raise LabError(f"{vm}'s engine still records it running {timeout:.0f} s after it was powered off")
            time.sleep(0.2)

    def kill(self, vm: str) -> None:
        """Pull the plug: no shutdown, no flush, as a power loss would. Through the VM's engine,
        which returns once its own record says the VM is off (`power_cut` does not wait for it)."""
        c = self.container(vm)
        if c.status == "running":
            try:
                c.kill()
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: it stopped meanwhile (the injection got there first)
                    raise
        self.forget(vm)

    def start(self, vm: str) -> None:
        c = self.container(vm)
        c.reload()
        deadline = time.monotonic() + 60
        while c.status == "running" and self.powered_off(vm) and time.monotonic() < deadline:
            time.sleep(0.2)  # powered off a moment ago (`power_cut`): the engine's record follows
            c.reload()
        if c.status != "running":
            c.start()
        self.forget(vm)
        with self._lock:
            self._cgroups.pop(vm, None)

    def remove_volume(self, name: str, site: str) -> None:
        """Delete a data volume on a site's engine (gone already: nothing to do)."""
        try:
            self._engines[self._engine_site(site)].volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def network(self, segment: str) -> Network:
        return self._engines[self.topology.segment(segment).site].networks.get(segment_resource(self.stack, segment))

    def attached(self, vm: str, segment: str) -> bool:
        c = self.container(vm)
        c.reload()
        return segment_resource(self.stack, segment) in c.attrs["NetworkSettings"]["Networks"]

    def cut(self, vm: str, segment: str) -> None:
        """Disable the VM's port on a segment (works on a stopped VM too)."""
        if self.attached(vm, segment):
            self.network(segment).disconnect(self.container(vm), force=True)

    def plug(self, vm: str, segment: str) -> None:
        """Give the VM its port on a segment back, with its declared address, behind its firewall.

        A running VM cannot place its firewall on the new port itself (no NET_ADMIN past boot):
        the hypervisor runs the VM's network policy again; a stopped one places it as it boots."""
        if self.attached(vm, segment):
            return
        address = self.plan(vm).addresses[segment]
        self.network(segment).connect(self.container(vm), ipv4_address=address)
        if self.running(vm):
            code, output = self.container(vm).exec_run(["/usr/local/sbin/lgcloud-net-policy"])
            if code != 0:
                self.cut(vm, segment)  # fail closed, as at boot
                said = output.decode(errors="replace").strip()[-300:] if isinstance(output, bytes) else ""
                raise LabError(f"{vm}: its firewall could not be placed on {segment}; port removed again: {said}")

    def write_file(self, vm: str, path: str, content: bytes, mode: int = 0o644, uid: int = 0) -> None:
        """Write a file onto the VM's disk through the hypervisor: works while the VM is off."""
        directory, _, name = path.rpartition("/")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(content), mode, uid, uid, time.time()
            tar.addfile(info, io.BytesIO(content))
        self.container(vm).put_archive(directory or "/", buffer.getvalue())

    def read_file(self, vm: str, path: str) -> bytes:
        """Read a file from the VM's disk through the hypervisor: works while the VM is off."""
        try:
            content = archived_file(self._engine_of(vm).api, vm_resource(self.stack, vm), path)
        except docker.errors.NotFound:
            raise LabError(f"VM {vm} has no {path}, or does not exist") from None
        if content is None:
            raise LabError(f"{vm}: {path} is not a file")
        return content

    def pin_host_keys(self, vms: list[str]) -> Path:
        """Read each VM's SSH host key from its disk through the hypervisor, and pin it.

        A VM that never booted (one a failover keeps off) has no key yet and is not pinned: no
        SSH reaches it until it is. Pins of VMs the stack no longer has are dropped."""
        keys = []
        for vm in vms:
            site = self._engine_site(self.plan(vm).site)
            endpoint = None if site in self._local else endpoint_or_default(self.cfg.sites[site].endpoint)
            key = read_host_key(self._engines[site], VmAccess(vm, self.mgmt(vm), vm_resource(self.stack, vm), endpoint))
            if key is not None:
                keys.append(key)
        known = {v.name for v in (*self.topology.vms, *self.topology.restore_vms)}
        gone = {vm for vm in _pinned(self.stack) if vm not in known}
        return pin_host_keys(self.stack, keys, forget=gone)

    # --- inside the VMs ---

    def mgmt(self, vm: str) -> str:
        return self.plan(vm).addresses["mgmt"]

    def alive(self, vm: str, timeout: float = 0.3) -> bool:
        """A heartbeat: the VM's sshd accepts a connection on mgmt within `timeout`."""
        try:
            with socket.create_connection((self.mgmt(vm), 22), timeout=timeout):
                return True
        except OSError:
            return False

    def wait_alive(self, vm: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.alive(vm, 1):
            if time.monotonic() > deadline:
                raise LabError(f"{vm} did not answer on mgmt within {timeout:.0f} s")
            time.sleep(0.2)

    def session(self, vm: str) -> paramiko.SSHClient:
        """The VM's kept-open connection; made by one thread while the others wait for it (many
        connections opened at once to one VM would meet sshd's MaxStartups)."""
        with self._lock:
            connecting = self._connecting.setdefault(vm, threading.Lock())
        with connecting:
            with self._lock:
                client = self._sessions.get(vm)
                transport = client.get_transport() if client else None
                if client and transport and transport.is_active():
                    return client
            return self._connect(vm)

    def _connect(self, vm: str) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        known = known_hosts_path(self.stack)
        if known.exists():
            client.load_host_keys(str(known))
        # Only the key `up` read from the VM's disk: whatever else answers at its address is refused.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.mgmt(vm),
                username="root",
                pkey=self._key,
                timeout=5,
                banner_timeout=5,
                auth_timeout=5,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException:
            client.close()
            raise LabError(another_key(self.stack, vm, self.mgmt(vm))) from None
        with self._lock:
            self._sessions[vm] = client
        return client

    def _forget_if_closed(self, vm: str) -> None:
        with self._lock:
            client = self._sessions.get(vm)
            transport = client.get_transport() if client else None
            if transport is not None and transport.is_active():
                return
        self.forget(vm)

    def forget(self, vm: str) -> None:
        with self._lock:
            client = self._sessions.pop(vm, None)
        if client:
            client.close()

    def _channel(self, vm: str) -> threading.BoundedSemaphore:
        with self._lock:
            return self._channels.setdefault(vm, threading.BoundedSemaphore(CHANNELS_PER_VM))

    def _open(self, vm: str) -> paramiko.Channel:
        """A new session channel on the VM's connection, opened again if sshd refuses it."""
        for pause in (*CHANNEL_RETRIES, None):
            try:
                transport = self.session(vm).get_transport()
                if transport is None:
                    raise paramiko.SSHException("SSH session not active")
                return transport.open_session(timeout=10)
            except paramiko.SSHException:  # ChannelException ("Connect failed") is one
                if pause is None:
                    raise
                self._forget_if_closed(vm)  # the connection itself gone: the next try makes a new one
                time.sleep(pause)
        raise AssertionError("unreachable")

    def run(self, vm: str, command: str, stdin: str = "", timeout: float = 60, check: bool = True) -> str:
        """Run a shell command on a VM; its stdout, or LabError naming the VM and stderr."""
        try:
            with self._channel(vm):
                channel = self._open(vm)
                try:
                    channel.settimeout(timeout)
                    channel.exec_command(command)
                    out, err = channel.makefile("rb"), channel.makefile_stderr("rb")
                    if stdin:
                        channel.sendall(stdin.encode())
                    channel.shutdown_write()
                    text, error = out.read().decode(), err.read().decode()
                    status = channel.recv_exit_status()
                finally:
                    channel.close()
        except (OSError, paramiko.SSHException) as exc:
            # Other commands may share the connection: it is dropped only when it is gone anyway.
            self._forget_if_closed(vm)
            raise LabError(f"{vm}: {exc.__class__.__name__}: {exc}") from None
        if check and status != 0:
            raise LabError(f"{vm}: `{command[:80]}` exited {status}: {error.strip()[-400:]}")
        return text

    def script(self, vm: str, name: str, *args: str, stdin: str = "", timeout: float = 60) -> str:
        """Run one of the operations' scripts (``files/<name>``) on a VM with `args`; its stdout."""
        text = (SCRIPTS / name).read_text(encoding="utf-8")
        return self.run(vm, f"sh -c {shlex.quote(text)} {shlex.join([name, *args])}", stdin=stdin, timeout=timeout)

    def sql(self, vm: str, query: str, database: str = "jumin", timeout: float = 30) -> str:
        """One statement through psql as postgres on the local socket; unaligned output."""
        return self.run(
            vm,
            f"chpst -u postgres psql -XAtq -v ON_ERROR_STOP=1 -d {database} -c {shlex.quote(query)}",
            timeout=timeout,
        ).strip()

    def replication_password(self) -> str:
        return stack_secrets(self.stack).postgresql_replication_password

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for vm in list(self._sessions):
            self.forget(vm)
