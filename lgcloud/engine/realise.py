"""Realise translated resources on a Docker Engine, keeping state in Docker labels.

Each network, volume and container the engine makes carries the stack's name, the resource's
logical name and a digest of what was declared; comparing digests is how a second ``up``
knows what changed, and the stack label is how ``down`` finds exactly its own resources.

Volumes hold data: a replaced container gets its volumes back, nothing deletes a volume unless the
operator asks for it (``--allow-data-loss``, ``down --delete-data``), and a VM that kept its data
on its own disk before it had a volume has that data carried into the new volume.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from ..errors import OperatorError
from ..model.naming import STACK_LABEL
from .translate import Attachment, ContainerSpec, NetworkSpec, Upload, VolumeSpec

__all__ = ["RESOURCE_LABEL", "Change", "EngineError", "Realiser", "connect"]

RESOURCE_LABEL = "lgcloud.engine.resource"
DIGEST_LABEL = "lgcloud.engine.digest"
_NEVER_STARTED = "0001-01-01T00:00:00Z"


class EngineError(OperatorError):
    """The engine could not do what the program declares; the message says what to do."""


@dataclass(frozen=True)
class Change:
    # create | replace | start | unchanged | delete | fenced (kept off for a failover) | kept (a
    # volume no longer declared, or left by down: its data stays) | deferred (replaced by the next
    # run: its partner was replaced in this one)
    action: str
    kind: str  # network | volume | container
    name: str
    seconds: float = 0.0


def connect(endpoint: str | None = None) -> docker.DockerClient:
    """A client for a site's Docker Engine, with a clear message when none answers."""
    try:
        client = (
            docker.DockerClient(base_url=endpoint, max_pool_size=32) if endpoint else docker.from_env(max_pool_size=32)
        )
        client.ping()
        return client
    except Exception as exc:
        where = endpoint or "the local socket"
        raise EngineError(
            f"no Docker Engine answers at {where} ({exc.__class__.__name__}); "
            "run `make host` (installs Debian's docker.io and starts dockerd) or fix the site's endpoint"
        ) from None


@dataclass
class Realiser:
    """Creates, replaces and deletes one stack's resources on its engines."""

    stack: str
    preview: bool = False
    on_change: Callable[[Change], None] = lambda change: None
    # Containers a failover fenced: never started, replaced or made anew until failback.
    fenced: frozenset[str] = frozenset()
    allow_data_loss: bool = False  # may volumes the program no longer declares be deleted
    # Container -> the one it must not be replaced together with (a primary -> its replica): when
    # that one was replaced in this run, this one waits for the next.
    partners: dict[str, str] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    interrupted: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _clients: dict[str, docker.DockerClient] = field(default_factory=dict)
    _inventory: dict[str, dict] = field(default_factory=dict)  # endpoint -> {(kind, name): attrs}
    _images: dict[tuple[str, str], str] = field(default_factory=dict)
    _new_volumes: set[str] = field(default_factory=set)  # made in this run: empty, or to carry data into
    _replaced: set[str] = field(default_factory=set)  # containers replaced (or, previewing, to be) in this run

    # -- engines and what they already hold ---------------------------------------------

    def client(self, endpoint: str | None) -> docker.DockerClient:
        key = endpoint or ""
        with self._lock:
            if key not in self._clients:
                self._clients[key] = connect(endpoint)
                self._inventory[key] = self._scan(self._clients[key])
            return self._clients[key]

    def _scan(self, client: docker.DockerClient) -> dict:
        """One listing of the stack's networks and containers, so a no-change up is cheap."""
        found = {}
        flt = {"label": [f"{STACK_LABEL}={self.stack}", RESOURCE_LABEL]}
        for net in client.api.networks(filters=flt):
            found[("network", net["Labels"][RESOURCE_LABEL])] = net
        for volume in client.api.volumes(filters=flt).get("Volumes") or []:
            found[("volume", volume["Labels"][RESOURCE_LABEL])] = volume
        listed = client.api.containers(all=True, filters=flt)
        with ThreadPoolExecutor(8) as pool:  # inspect answers what a listing lacks (state, start time)
            for c, inspected in zip(listed, pool.map(client.api.inspect_container, [c["Id"] for c in listed])):
                found[("container", c["Labels"][RESOURCE_LABEL])] = inspected
        return found

    def _existing(self, endpoint: str | None, kind: str, resource: str) -> dict | None:
        self.client(endpoint)
        return self._inventory[endpoint or ""].get((kind, resource))

    def _record(self, action: str, kind: str, name: str, started: float) -> None:
        change = Change(action, kind, name, time.monotonic() - started)
        with self._lock:
            self.changes.append(change)
        self.on_change(change)

    def _guard(self) -> None:
        if self.interrupted.is_set():
            raise EngineError("interrupted before this resource was made")

    def _labels(self, declared: dict[str, str], resource: str, digest: str) -> dict[str, str]:
        return {**declared, STACK_LABEL: self.stack, RESOURCE_LABEL: resource, DIGEST_LABEL: digest}

    # -- networks -------------------------------------------------------------------------

    def network(self, endpoint: str | None, resource: str, spec: NetworkSpec) -> tuple[str, dict]:
        started = time.monotonic()
        self.seen.add(resource)
        client = self.client(endpoint)
        existing = self._existing(endpoint, "network", resource)
        outputs = {"name": spec.name}
        if existing and existing["Labels"].get(DIGEST_LABEL) == spec.digest:
            self._record("unchanged", "network", spec.name, started)
            return existing["Id"], outputs
        action = "replace" if existing else "create"
        if self.preview:
            self._record(action, "network", spec.name, started)
            return existing["Id"] if existing else f"preview-{resource}", outputs
        self._guard()
        if existing:
            self._remove_network(client, existing["Id"])
        self._refuse_foreign(client.api.networks(names=[spec.name]), "network", spec.name)
        try:
            ipam = None
            if spec.subnet:
                ipam = docker.types.IPAMConfig(
                    pool_configs=[docker.types.IPAMPool(subnet=spec.subnet, gateway=spec.gateway)]
                )
            created = client.api.create_network(
                spec.name,
                driver=spec.driver,
                internal=spec.internal,
                ipam=ipam,
                options=spec.options or None,
                labels=self._labels(spec.labels, resource, spec.digest),
                check_duplicate=True,
            )
        except APIError as exc:
            raise EngineError(
                f"network {spec.name} ({spec.subnet}) could not be created: "
                f"{exc.explanation}; free that subnet or change the stack's segments"
            ) from None
        self._record(action, "network", spec.name, started)
        return created["Id"], outputs

    def _remove_network(self, client: docker.DockerClient, network_id: str) -> None:
        """Remove a network of this stack, first removing this stack's containers on it.

        Those containers are then made anew when their own registration arrives.
        """
        attached = client.api.inspect_network(network_id).get("Containers") or {}
        for container_id in attached:
            labels = client.api.inspect_container(container_id)["Config"]["Labels"] or {}
            if labels.get(STACK_LABEL) != self.stack:
                raise EngineError(
                    f"network {network_id[:12]} holds container {container_id[:12]} that is not "
                    f"part of stack {self.stack}; detach it and retry"
                )
            client.api.remove_container(container_id, force=True)
            with self._lock:
                for inventory in self._inventory.values():
                    inventory.pop(("container", labels.get(RESOURCE_LABEL)), None)
        client.api.remove_network(network_id)

    def _refuse_foreign(self, found: list[dict], kind: str, name: str) -> None:
        for item in found:
            labels = item.get("Labels") or {}
            if item.get("Name", name).lstrip("/") == name and labels.get(STACK_LABEL) != self.stack:
                raise EngineError(
                    f"a {kind} named {name} already exists and was not made by stack "
                    f"{self.stack}; remove or rename it, or change the stack name"
                )

    # -- volumes --------------------------------------------------------------------------

    def volume(self, endpoint: str | None, resource: str, spec: VolumeSpec) -> tuple[str, dict]:
        started = time.monotonic()
        self.seen.add(resource)
        client = self.client(endpoint)
        existing = self._existing(endpoint, "volume", resource)
        outputs = {"name": spec.name}
        if existing:
            if (existing.get("Labels") or {}).get(DIGEST_LABEL) != spec.digest:
                raise EngineError(
                    f"volume {spec.name} holds data and was made with another driver or options; making it anew "
                    "would delete that data",
                    "keep its declaration as it was, or move the data yourself and remove the volume",
                )
            self._record("unchanged", "volume", spec.name, started)
            return spec.name, outputs
        if self.preview:
            self._record("create", "volume", spec.name, started)
            return f"preview-{resource}", outputs
        self._guard()
        self._refuse_foreign(client.api.volumes(filters={"name": spec.name}).get("Volumes") or [], "volume", spec.name)
        client.api.create_volume(
            spec.name,
            driver=spec.driver,
            driver_opts=spec.options or None,
            labels=self._labels(spec.labels, resource, spec.digest),
        )
        with self._lock:
            self._new_volumes.add(spec.name)
        self._record("create", "volume", spec.name, started)
        return spec.name, outputs

    def _carry_over(self, client: docker.DockerClient, old: dict, spec: ContainerSpec) -> None:
        """Carry what a container being replaced kept on its own disk, at each path where its
        successor mounts a volume made in this run, into that volume: stopped first, so the files
        are consistent (a database shuts down cleanly)."""
        mounted = {m["Destination"] for m in old.get("Mounts") or []}
        carried = [m for m in spec.mounts if m.volume in self._new_volumes and m.path not in mounted]
        if not carried or old["State"]["StartedAt"] == _NEVER_STARTED:
            return
        api = client.api
        api.stop(old["Id"], timeout=60)
        for mount in carried:
            with tempfile.TemporaryFile() as tar:
                stream, _ = api.get_archive(old["Id"], mount.path)
                top = _reroot(stream, tar)
                tar.seek(0)
                # The archive API leaves the volume's own directory to root; a helper gives it the
                # owner and mode the directory had (postgres' home, say) once the files are in.
                helper = api.create_container(
                    spec.image,
                    entrypoint=["/bin/chown", f"{top.uid}:{top.gid}", "/carry"],
                    network_disabled=True,
                    labels={STACK_LABEL: self.stack, "lgcloud.engine.carry": mount.volume},
                    host_config=api.create_host_config(
                        binds={mount.volume: {"bind": "/carry", "mode": "rw"}}, network_mode="none"
                    ),
                )
                try:
                    api.put_archive(helper["Id"], "/carry", tar)
                    api.start(helper["Id"])
                    if api.wait(helper["Id"], timeout=60)["StatusCode"] != 0:
                        raise EngineError(
                            f"{spec.name}: the data carried into {mount.volume} could not be given "
                            f"its owner {top.uid}:{top.gid}"
                        )
                finally:
                    api.remove_container(helper["Id"], force=True)

    # -- containers -----------------------------------------------------------------------

    def container(self, endpoint: str | None, resource: str, spec: ContainerSpec) -> tuple[str, dict]:
        started = time.monotonic()
        self.seen.add(resource)
        client = self.client(endpoint)
        image_id = self._image_id(client, spec.image)
        digest = spec.digest(image_id)
        existing = self._existing(endpoint, "container", resource)
        if spec.name in self.fenced and not (existing and existing["State"]["Running"]):
            self._record("fenced", "container", spec.name, started)
            return existing["Id"] if existing else f"fenced-{resource}", self._outputs(spec, existing)
        if existing and existing["Config"]["Labels"].get(DIGEST_LABEL) == digest:
            state = existing["State"]
            if state["Running"]:
                self._record("unchanged", "container", spec.name, started)
                return existing["Id"], self._outputs(spec, existing)
            if state["StartedAt"] != _NEVER_STARTED:
                # Stopped (by a drill, or a crash): start it again, keeping its disk.
                if not self.preview:
                    self._guard()
                    self._start(client, existing["Id"], spec.name)
                self._record("start", "container", spec.name, started)
                return existing["Id"], self._outputs(spec, existing)
            # Never started: an earlier up was interrupted half-way; make it anew.
        action = "replace" if existing else "create"
        if existing:
            with self._lock:
                deferred = self.partners.get(spec.name) in self._replaced
                if not deferred:
                    self._replaced.add(spec.name)
            if deferred:
                self._record("deferred", "container", spec.name, started)
                return existing["Id"], self._outputs(spec, existing)
        if self.preview:
            self._record(action, "container", spec.name, started)
            return existing["Id"] if existing else f"preview-{resource}", self._outputs(spec, None)
        self._guard()
        if existing:
            self._carry_over(client, existing, spec)
            client.api.remove_container(existing["Id"], force=True)
        container_id = self._create(client, resource, spec, digest)
        inspected = self._start(client, container_id, spec.name)
        self._record(action, "container", spec.name, started)
        return container_id, self._outputs(spec, inspected)

    def _image_id(self, client: docker.DockerClient, image: str) -> str:
        key = (client.api.base_url, image)
        if key not in self._images:  # one look-up per image and engine, not one per VM
            try:
                self._images[key] = client.api.inspect_image(image)["Id"]
            except ImageNotFound:
                raise EngineError(f"image {image} is not on the engine; build it with `make images`") from None
        return self._images[key]

    def _create(self, client: docker.DockerClient, resource: str, spec: ContainerSpec, digest: str) -> str:
        api = client.api
        first, *rest = spec.attachments or (None,)
        host_config = api.create_host_config(
            nano_cpus=spec.nano_cpus,
            mem_limit=f"{spec.mem_limit_mb}m" if spec.mem_limit_mb else None,
            cap_add=list(spec.cap_add) or None,
            restart_policy={"Name": spec.restart} if spec.restart != "no" else None,
            network_mode=first.network if first else "none",
            binds={m.volume: {"bind": m.path, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts} or None,
        )
        networking = None
        if first:
            # The stubs type the argument as one endpoint; the API takes a mapping of network to endpoint.
            networking = api.create_networking_config({first.network: self._endpoint(api, first)})  # type: ignore[arg-type]
        try:
            created = api.create_container(
                spec.image,
                command=list(spec.command) if spec.command else None,
                name=spec.name,
                hostname=spec.hostname,
                labels=self._labels(spec.labels, resource, digest),
                environment=list(spec.env),
                host_config=host_config,
                networking_config=networking,
                detach=True,
            )
            for attachment in rest:
                api.connect_container_to_network(
                    created["Id"],
                    attachment.network,
                    ipv4_address=attachment.ipv4_address,
                    aliases=list(attachment.aliases) or None,
                )
            if spec.uploads:
                api.put_archive(created["Id"], "/", _tar(spec.uploads))
        except APIError as exc:
            if exc.status_code == 409:  # the name is taken: whose it is is asked only then, not before every create
                self._refuse_foreign_container(api, spec.name)
            raise EngineError(
                f"container {spec.name} could not be created: {exc.explanation}; "
                "check that its addresses are free and its segments exist"
            ) from None
        return created["Id"]

    def _refuse_foreign_container(self, api: docker.APIClient, name: str) -> None:
        try:
            labels = api.inspect_container(name)["Config"]["Labels"] or {}
        except NotFound:
            return
        self._refuse_foreign([{"Name": name, "Labels": labels}], "container", name)

    @staticmethod
    def _endpoint(api: docker.APIClient, attachment: Attachment) -> docker.types.EndpointConfig:
        return api.create_endpoint_config(
            ipv4_address=attachment.ipv4_address, aliases=list(attachment.aliases) or None
        )

    def _start(self, client: docker.DockerClient, container_id: str, name: str) -> dict:
        """Start a container; returns how the engine then sees it (its addresses for the outputs)."""
        try:
            client.api.start(container_id)
        except APIError as exc:
            raise EngineError(f"container {name} did not start: {exc.explanation}") from None
        # vm-init refuses to run without its firewall; catch that here rather than at SSH time.
        for _ in range(20):
            inspected = client.api.inspect_container(container_id)
            state = inspected["State"]
            if not state["Running"]:
                logs = client.api.logs(container_id, tail=5).decode(errors="replace").strip()
                raise EngineError(f"container {name} exited right after start (code {state['ExitCode']}): {logs}")
            if state.get("Pid"):
                break
            time.sleep(0.05)
        return inspected

    @staticmethod
    def _outputs(spec: ContainerSpec, inspected: dict | None) -> dict:
        networks = (inspected or {}).get("NetworkSettings", {}).get("Networks") or {}
        return {
            "name": spec.name,
            "networkDatas": [
                {
                    "networkName": a.network,
                    "ipAddress": (networks.get(a.network) or {}).get("IPAddress") or a.ipv4_address,
                }
                for a in spec.attachments
            ],
        }

    # -- what the program no longer declares ------------------------------------------------

    def prune(self) -> None:
        """Delete this stack's resources that the program did not declare this time; volumes (data)
        only with ``allow_data_loss``, else they are kept and said so."""
        for key, inventory in list(self._inventory.items()):
            client = self._clients[key]
            for kind in ("container", "network", "volume"):  # containers first: they hold the rest
                for (k, resource), attrs in inventory.items():
                    if k != kind or resource in self.seen:
                        continue
                    started = time.monotonic()
                    name = (attrs.get("Name") or "").lstrip("/")
                    if kind == "volume" and not self.allow_data_loss:
                        self._record("kept", kind, name, started)
                        continue
                    if not self.preview:
                        try:
                            if kind == "container":
                                client.api.remove_container(attrs["Id"], force=True)
                            elif kind == "network":
                                self._remove_network(client, attrs["Id"])
                            else:
                                client.api.remove_volume(name)
                        except NotFound:
                            pass
                    self._record("delete", kind, name, started)


def _reroot(stream: Iterable[bytes], out: IO[bytes]) -> tarfile.TarInfo:
    """Write the tar `stream` (a directory, as the archive API returns it) to `out` with its
    top directory as the root: ``postgresql/15/main`` becomes ``./15/main``. Returns the top
    directory's own entry (its owner and mode)."""
    top = tarfile.TarInfo(".")
    with tempfile.TemporaryFile() as raw:
        for chunk in stream:
            raw.write(chunk)
        raw.seek(0)
        with tarfile.open(fileobj=raw, mode="r:") as source, tarfile.open(fileobj=out, mode="w:") as target:
            for member in source:
                _, _, rest = member.name.partition("/")
                if not rest:
                    top = member
                member.name = f"./{rest}" if rest else "."
                if member.islnk():
                    member.linkname = f"./{member.linkname.partition('/')[2]}"
                target.addfile(member, source.extractfile(member) if member.isfile() else None)
    return top


def _tar(uploads: tuple[Upload, ...]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        directories = set()
        for upload in uploads:
            parts = upload.path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    archive.addfile(info)
            data = upload.content.encode()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.mtime = len(data), upload.mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
