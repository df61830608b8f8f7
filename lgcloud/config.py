"""Stack configuration: the one place that reads and validates what an operator declared.

The stack config lives in ``stacks/Pulumi.<stack>.yaml`` under the ``lgcloud:`` namespace,
with defaults declared once in ``Pulumi.yaml``. Every problem is reported with its key path::

    >>> load_stack("dev").municipalities[0].name
    'Ａ市'
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .codes import local_government_check_digit, local_government_code_is_valid

__all__ = [
    "BUSINESS_SYSTEMS",
    "PROJECT_ROOT",
    "SITES",
    "WIDE_SEGMENTS",
    "ConfigInvalid",
    "Problem",
    "SlaTarget",
    "StackConfig",
    "duration_seconds",
    "load_file",
    "read_file",
    "stack_file",
    "stack_name",
    "load_stack",
    "parse",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "lgcloud"

# 業務 a/b/c of the seed: the business systems a municipality may run in the center.
BUSINESS_SYSTEMS: dict[str, str] = {
    "jumin": "住民記録",
    "zei": "税",
    "fukushi": "福祉",
    "kokuho": "国民健康保険",
}
SITES = ("center", "backup")
# Segments shared by the whole stack; each municipality also gets one closed segment per site.
WIDE_SEGMENTS = ("mgmt", "lgwan", "ipvpn", "shared", "interconnect", "internet")

def _cidr(value: Any) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value)
    except (ValueError, TypeError) as exc:
        hint = ""
        try:
            hint = f"; did you mean {ipaddress.IPv4Network(value, strict=False)}?"
        except (ValueError, TypeError):
            pass
        raise ValueError(f"not an IPv4 CIDR ({exc}){hint}") from None


def _address(value: Any) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an IPv4 address ({exc})") from None


Cidr = Annotated[ipaddress.IPv4Network, BeforeValidator(_cidr)]
Address = Annotated[ipaddress.IPv4Address, BeforeValidator(_address)]
Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Allocation(_Strict):
    """What one VM is given: virtual CPUs and memory."""

    vcpus: float = Field(gt=0, le=64)
    memory_mb: int = Field(ge=64, le=262_144)


class Site(_Strict):
    """A data center: where its Docker Engine answers and what its hypervisors hold."""

    endpoint: str = "unix:///var/run/docker.sock"
    capacity: Allocation


class Segments(_Strict):
    mgmt: Cidr
    lgwan: Cidr
    ipvpn: Cidr
    shared: Cidr
    interconnect: Cidr
    internet: Cidr


class Allocations(_Strict):
    """Allocation per kind of VM; a municipality may override its own."""

    app: Allocation = Allocation(vcpus=0.5, memory_mb=512)
    db: Allocation = Allocation(vcpus=0.5, memory_mb=1024)
    terminal: Allocation = Allocation(vcpus=0.25, memory_mb=256)
    gateway: Allocation = Allocation(vcpus=0.5, memory_mb=256)
    monitor: Allocation = Allocation(vcpus=0.5, memory_mb=1024)
    bastion: Allocation = Allocation(vcpus=0.25, memory_mb=256)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(value: Any) -> int:
    """Seconds in a Prometheus-style duration such as ``90s``, ``30m``, ``1h`` or ``30d``."""
    text = str(value).strip()
    number, unit = text[:-1], text[-1:]
    if unit not in _DURATION_UNITS or not number.isdigit() or int(number) == 0:
        raise ValueError(f"not a duration: write a whole number and one of s, m, h, d, w, e.g. '30d' (got {value!r})")
    return int(number) * _DURATION_UNITS[unit]


def _duration(value: Any) -> str:
    duration_seconds(value)
    return str(value).strip()


Duration = Annotated[str, BeforeValidator(_duration)]


class SlaTarget(_Strict):
    """Service levels of one business system. The defaults are the standard levels that the
    guidelines for municipal systems ask of core systems (稼働率 99.5 %, RTO 12 h, RPO one business
    day); a stack states stricter values where the lab does better."""

    availability_percent: float = Field(99.5, gt=0, le=100)
    window: Duration = "30d"  # the period the availability is contracted over
    latency_p95_ms: int = Field(3000, gt=0)
    rto_seconds: float = Field(12 * 3600, gt=0)
    rpo_seconds: float = Field(24 * 3600, ge=0)


class SlaOverride(_Strict):
    """A municipality's own targets for one system; keys left out keep the stack's."""

    availability_percent: float | None = Field(None, gt=0, le=100)
    window: Duration | None = None
    latency_p95_ms: int | None = Field(None, gt=0)
    rto_seconds: float | None = Field(None, gt=0)
    rpo_seconds: float | None = Field(None, ge=0)


class MunicipalityAllocations(_Strict):
    app: Allocation | None = None
    db: Allocation | None = None
    terminal: Allocation | None = None


class Municipality(_Strict):
    """A municipality joining the center (Ａ市, Ｂ町, Ｃ村 …)."""

    id: Slug
    name: str = Field(min_length=1, max_length=40)
    code: str
    access: Literal["lgwan", "ipvpn"]
    systems: tuple[str, ...] = Field(min_length=1)
    segments: dict[str, Cidr]
    terminal: Address
    replication: Literal["sync", "async"] = "sync"
    allocation: MunicipalityAllocations = MunicipalityAllocations()
    # Per business system, over the stack's `sla`; only the keys given are overridden.
    sla: dict[str, SlaOverride] = {}

    @field_validator("code")
    @classmethod
    def _code(cls, code: str) -> str:
        if len(code) != 6 or not code.isdigit():
            raise ValueError("a 地方公共団体コード is six digits, e.g. '131016'")
        if not local_government_code_is_valid(code):
            expected = local_government_check_digit(code[:5])
            raise ValueError(f"wrong check digit: {code[:5]} takes {expected}, not {code[5]}")
        return code

    @field_validator("systems")
    @classmethod
    def _systems(cls, systems: tuple[str, ...]) -> tuple[str, ...]:
        for system in systems:
            if system not in BUSINESS_SYSTEMS:
                known = ", ".join(BUSINESS_SYSTEMS)
                raise ValueError(f"unknown business system {system!r}; known: {known}")
        return systems

    @field_validator("segments")
    @classmethod
    def _segments(cls, segments: dict[str, Cidr]) -> dict:
        for site in segments:
            if site not in SITES:
                raise ValueError(f"unknown site {site!r}; sites are {', '.join(SITES)}")
        for site in SITES:
            if site not in segments:
                raise ValueError(f"no closed segment declared for site {site!r}")
        return segments

    @field_validator("sla")
    @classmethod
    def _sla(cls, sla: dict[str, SlaOverride], info: ValidationInfo) -> dict:
        for system in sla:
            if system not in info.data.get("systems", ()):
                raise ValueError(f"SLA for {system!r}, a system this municipality does not run; "
                                 "add it to systems or remove the target")
        return sla

    def allocation_for(self, kind: str, defaults: Allocations) -> Allocation:
        return getattr(self.allocation, kind, None) or getattr(defaults, kind)


class StackConfig(_Strict):
    """Everything one stack declares; see Pulumi.yaml for each key's meaning."""

    stack: str = Field(pattern=r"^[a-z][a-z0-9]{0,11}$")
    image: str = "lgcloud/vm:latest"
    sites: dict[str, Site]
    segments: Segments
    allocations: Allocations = Allocations()
    municipalities: tuple[Municipality, ...] = Field(min_length=1)
    sla: SlaTarget = SlaTarget()  # every system of every municipality, unless it states its own

    @field_validator("sites")
    @classmethod
    def _sites(cls, sites: dict[str, Site]) -> dict[str, Site]:
        for name in sites:
            if name not in SITES:
                raise ValueError(f"unknown site {name!r}; sites are {', '.join(SITES)}")
        if "center" not in sites:
            raise ValueError("the joint-use center (site 'center') is missing")
        if "backup" not in sites:
            raise ValueError("the backup site (site 'backup') is missing: data needs an off-site copy")
        return sites

    def municipality(self, code: str) -> Municipality:
        for m in self.municipalities:
            if m.code == code or m.id == code:
                return m
        raise KeyError(code)

    def sla_for(self, municipality: Municipality, system: str) -> SlaTarget:
        """The targets one municipality's system is held to: its own over the stack's."""
        own = municipality.sla.get(system)
        overrides = own.model_dump(exclude_none=True) if own else {}
        return SlaTarget.model_validate({**self.sla.model_dump(), **overrides})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where, what value, and what to do."""

    path: str
    value: Any
    message: str

    def __str__(self) -> str:
        return f"{self.path} = {self.value!r}: {self.message}"


class ConfigInvalid(Exception):
    """Raised with every problem found; nothing has been created when it is raised."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the stack config:\n{lines}")


def _key_path(loc: tuple) -> str:
    path = f"{NAMESPACE}:{loc[0]}" if loc else NAMESPACE
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _from_validation_error(error: ValidationError) -> list[Problem]:
    problems = []
    for e in error.errors():
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown key (a typo?); remove it or fix its name"
        problems.append(Problem(_key_path(e["loc"]), e.get("input"), message))
    return problems


def _consistency(cfg: StackConfig) -> list[Problem]:
    """Checks that span several keys: uniqueness, address plan, capacity."""
    from .topology import plan  # the plan knows every address and allocation

    problems: list[Problem] = []
    for field in ("id", "name", "code"):
        counts = Counter(getattr(m, field) for m in cfg.municipalities)
        for i, m in enumerate(cfg.municipalities):
            value = getattr(m, field)
            if counts[value] > 1:
                problems.append(
                    Problem(f"{NAMESPACE}:municipalities[{i}].{field}", value,
                            f"duplicate {field}; each municipality needs its own")
                )

    named = [(f"{NAMESPACE}:segments.{k}", v) for k, v in cfg.segments]
    for i, m in enumerate(cfg.municipalities):
        named += [(f"{NAMESPACE}:municipalities[{i}].segments.{s}", n) for s, n in m.segments.items()]
    for a, (path_a, net_a) in enumerate(named):
        if net_a.prefixlen > 28:
            problems.append(Problem(path_a, str(net_a), "segment too small; use /28 or larger"))
        for path_b, net_b in named[a + 1:]:
            if net_a.overlaps(net_b):
                problems.append(Problem(path_b, str(net_b), f"overlaps {path_a} ({net_a})"))
    if problems:
        return problems  # an address plan over broken segments would only add noise

    for i, m in enumerate(cfg.municipalities):
        segment = getattr(cfg.segments, m.access)
        path = f"{NAMESPACE}:municipalities[{i}].terminal"
        if m.terminal not in segment:
            problems.append(Problem(path, str(m.terminal), f"outside its access segment {m.access} ({segment})"))
        elif m.terminal in (segment.network_address, segment.broadcast_address, segment.network_address + 1):
            problems.append(Problem(path, str(m.terminal), "reserved address (network, broadcast or the segment's router)"))

    try:
        topology = plan(cfg)
    except ValueError as exc:  # a segment too small for the VMs it must hold
        return problems + [Problem(f"{NAMESPACE}:segments", None, str(exc))]
    taken: dict[str, str] = {}
    for vm in topology.vms:
        for segment, address in vm.addresses.items():
            if address in taken:
                problems.append(Problem(f"{NAMESPACE}:vm {vm.name}", address,
                                        f"address on {segment} already used by {taken[address]}"))
            taken[address] = vm.name
    terminals = {f"{m.id}-terminal": i for i, m in enumerate(cfg.municipalities)}
    for m in cfg.municipalities:
        address = topology.service_addresses[m.id]
        holder = taken.get(address)
        if holder:
            path = (f"{NAMESPACE}:municipalities[{terminals[holder]}].terminal" if holder in terminals
                    else f"{NAMESPACE}:vm {holder}")
            problems.append(Problem(path, address, f"{m.id}'s service address (the top of {m.access}, counting "
                                                   f"down one per municipality); give {holder} a lower address"))
        taken[address] = f"{m.id}'s service address"

    for site, spec in cfg.sites.items():
        used = topology.allocated(site)
        for resource, unit in (("vcpus", ""), ("memory_mb", " MB")):
            have, need = getattr(spec.capacity, resource), getattr(used, resource)
            if need > have:
                problems.append(Problem(f"{NAMESPACE}:sites.{site}.capacity.{resource}", have,
                                        f"the VMs at {site} are allocated {need:g}{unit}; raise the capacity or lower allocations"))
    return problems


def parse(values: Mapping[str, Any], stack: str, source: str = "config") -> StackConfig:
    """Validate config values (keys without the ``lgcloud:`` prefix) into a StackConfig."""
    unknown_ns = [k for k in values if ":" in k]
    if unknown_ns:
        raise ConfigInvalid(source, [Problem(k, values[k], "unknown namespace; lgcloud keys start with 'lgcloud:'") for k in unknown_ns])
    try:
        cfg = StackConfig.model_validate({"stack": stack, **values})
    except ValidationError as exc:
        raise ConfigInvalid(source, _from_validation_error(exc)) from None
    problems = _consistency(cfg)
    if problems:
        raise ConfigInvalid(source, problems)
    return cfg


def _project_defaults(root: Path) -> dict[str, Any]:
    project = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8"))
    defaults = {}
    for key, decl in (project.get("config") or {}).items():
        if isinstance(decl, dict) and "default" in decl:
            defaults[key.split(":", 1)[1]] = decl["default"]
    return defaults


def _strip_namespace(config: Mapping[str, Any]) -> dict[str, Any]:
    values = {}
    for key, value in (config or {}).items():
        ns, sep, name = key.partition(":")
        values[name if sep and ns == NAMESPACE else key] = value
    return values


def read_file(path: Path, root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The config values of a stack file merged over the project's defaults, not yet validated."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigInvalid(str(path), [Problem("file", str(path), "no such stack config file")]) from None
    except yaml.YAMLError as exc:
        raise ConfigInvalid(str(path), [Problem("file", str(path), f"not valid YAML: {exc}")]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise ConfigInvalid(str(path), [Problem("config", None, "expected a mapping under 'config:'")])
    return {**_project_defaults(root), **_strip_namespace(document.get("config", {}))}


def stack_name(path: Path) -> str:
    return Path(path).name.removeprefix("Pulumi.").removesuffix(".yaml")


def load_file(path: Path, stack: str | None = None, root: Path = PROJECT_ROOT) -> StackConfig:
    """Load and validate a Pulumi stack config file (``Pulumi.<stack>.yaml``)."""
    return parse(read_file(path, root), stack or stack_name(path), str(path))


def stack_file(stack: str, root: Path = PROJECT_ROOT) -> Path:
    return root / "stacks" / f"Pulumi.{stack}.yaml"


def load_stack(stack: str, root: Path = PROJECT_ROOT) -> StackConfig:
    """Load the named stack's config from ``stacks/``."""
    return load_file(stack_file(stack, root), stack, root)


def from_pulumi_config(stack: str) -> StackConfig:
    """Validate the config the running Pulumi program was given (CLI or embedded engine)."""
    from pulumi.runtime.config import CONFIG, get_config_env

    given = {**get_config_env(), **CONFIG.get()}
    values = {}
    for key, raw in given.items():
        ns, _, name = key.partition(":")
        if ns != NAMESPACE:
            continue  # other packages' config (e.g. docker:host) is theirs to read
        try:
            values[name] = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            values[name] = raw  # a plain string such as the image tag
    return parse(values, stack, f"stack {stack}")
