"""The stack config's schema: what an operator may declare, each key checked on its own.

Checks that span several keys (uniqueness, the address plan, capacity) are in ``config``::

    >>> Allocation(vcpus=0.5, memory_mb=512).vcpus
    0.5
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from ..errors import EXIT_BAD_INPUT, OperatorError
from .codes import local_government_check_digit, local_government_code_is_valid
from .naming import LOCAL_ENDPOINT

__all__ = [
    "BUSINESS_SYSTEMS",
    "LINKAGE",
    "LinkagePolicy",
    "SHARED_SERVICES",
    "SLA_SERVICES",
    "SITES",
    "WIDE_SEGMENTS",
    "Allocation",
    "Allocations",
    "Municipality",
    "ServiceHours",
    "Site",
    "SlaTarget",
    "SlmPolicy",
    "StackConfig",
    "duration_seconds",
]

# 業務 a/b/c of the seed: the business systems a municipality may run in the center.
BUSINESS_SYSTEMS: dict[str, str] = {
    "jumin": "住民記録",
    "zei": "税",
    "fukushi": "福祉",
    "kokuho": "国民健康保険",
}
# Services of the 共通基盤 every municipality uses, held to targets like its business systems.
LINKAGE = "linkage"  # 番号連携: every municipality's tenant of the 中間サーバー
SHARED_SERVICES: dict[str, str] = {LINKAGE: "番号連携"}
# What an SLA may name: a business system or a shared service.
SLA_SERVICES: dict[str, str] = {**BUSINESS_SYSTEMS, **SHARED_SERVICES}
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

# Beside letters, marks and digits, what a municipality's name may hold (Ｊ市 ・ ヶ 々 are letters).
_NAME_PUNCTUATION = frozenset(" \u3000・()（）-－")


def _name(value: str) -> str:
    """A name as people write it. It reaches HAProxy's and gunicorn's config files, pages and
    metric labels: nothing in it may end a line, quote, comment or escape."""
    if value != value.strip():
        raise ValueError("a name neither begins nor ends with a space")
    for char in value:
        if unicodedata.category(char)[0] not in "LMN" and char not in _NAME_PUNCTUATION:
            shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
            raise ValueError(f"{shown} is not allowed in a name; use letters, digits, spaces and ・ - ( ) only")
    return value


Name = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_name)]
# An image reference as Docker spells it: repository[:tag], lower-case, no registry host needed.
ImageReference = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._/-]{0,127}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Allocation(_Strict):
    """What one VM is given: virtual CPUs and memory."""

    vcpus: float = Field(gt=0, le=64)
    memory_mb: int = Field(ge=64, le=262_144)


class Site(_Strict):
    """A data center: where its Docker Engine answers and what its hypervisors hold."""

    endpoint: str = LOCAL_ENDPOINT
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
    backup: Allocation = Allocation(vcpus=0.5, memory_mb=512)
    chukan: Allocation = Allocation(vcpus=0.5, memory_mb=384)
    broker: Allocation = Allocation(vcpus=0.5, memory_mb=384)
    portal: Allocation = Allocation(vcpus=0.25, memory_mb=256)


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


def _clock(value: Any) -> str:
    text = str(value).strip()
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2) or not (
        0 <= int(hours) < 24 and 0 <= int(minutes) < 60 or text == "24:00"
    ):
        raise ValueError(f"a time of day is HH:MM, 00:00 to 24:00, e.g. '08:30' (got {value!r})")
    return f"{int(hours):02d}:{minutes}"


Clock = Annotated[str, BeforeValidator(_clock)]


class ServiceHours(_Strict):
    """When a system is agreed to be in service, in Japan's time (JST). `days`: `every day`, or
    `office days` (開庁日: not Saturday, Sunday, a 国民の祝日 or 休日, nor 29 December to 3 January,
    the 行政機関の休日). Time outside them is neither availability nor outage."""

    days: Literal["every day", "office days"] = "every day"
    start: Clock = "00:00"
    end: Clock = "24:00"

    @field_validator("end")
    @classmethod
    def _end(cls, end: str, info: ValidationInfo) -> str:
        start = info.data.get("start", "00:00")
        if end <= start:
            raise ValueError(f"service hours end ({end}) before they start ({start}); write e.g. 08:30 to 17:15")
        return end

    @property
    def always(self) -> bool:
        return self.days == "every day" and (self.start, self.end) == ("00:00", "24:00")


class SlaTarget(_Strict):
    """Service levels of one business system. The defaults are the standard levels that the
    guidelines for municipal systems ask of core systems (稼働率 99.5 %, RTO 12 h, RPO one business
    day); a stack states stricter values where the lab does better."""

    availability_percent: float = Field(99.5, gt=0, le=100)
    window: Duration = "30d"  # the period the availability is contracted over
    service_hours: ServiceHours = ServiceHours()
    latency_p95_ms: int = Field(3000, gt=0)
    rto_seconds: float = Field(12 * 3600, gt=0)
    rpo_seconds: float = Field(24 * 3600, ge=0)


class BackupPolicy(_Strict):
    """How each municipality's database is backed up (世代管理): a full backup every `interval`,
    the newest `generations` of them kept with the WAL to restore to any moment since the oldest.
    The one copy is off-site by construction: the repository is at the backup site."""

    interval: Duration = "1d"
    generations: int = Field(7, ge=1, le=60)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        if duration_seconds(value) < 3600:
            raise ValueError(f"back up at most hourly: a full backup takes minutes at scale (got {value!r})")
        return value


class SlmPolicy(_Strict):
    """How service levels are managed (SLM): whether an announced drill is planned work (its own
    RTO and RPO are reported either way), and how much of a window must have been measured, in
    service, before a target is judged met (`lgcloud sla` says "not enough data" below it)."""

    drills_are_planned: bool = True
    minimum_data_percent: float = Field(90, gt=0, le=100)


class LinkagePolicy(_Strict):
    """How the 情報提供等記録 of 番号連携 are kept: 番号法 keeps them seven years, so a stack may
    keep them longer, never shorter (`lgcloud linkage purge-records` removes only older ones)."""

    record_retention_years: int = Field(7, ge=7, le=100)


class MonitoringPolicy(_Strict):
    """How often Prometheus scrapes every exporter and probes every office's services. Short on a
    small lab (a drill lasts minutes); longer on a large one, where scrapes and probes are a share
    of the host's CPU (at 154 VMs and 5 s, about a fifth of a 2-core machine at rest)."""

    scrape_interval: Duration = "5s"

    @field_validator("scrape_interval")
    @classmethod
    def _scrape_interval(cls, value: str) -> str:
        if not 1 <= duration_seconds(value) <= 30:
            raise ValueError(f"scrape between every 1s and 30s: the SLA rules read one-minute windows (got {value!r})")
        return value


class PortalPolicy(_Strict):
    """マイ・ポータル and 公的個人認証: until when a card issued now is valid (`lgcloud card issue`).
    None: five years from issue, as a 利用者証明用電子証明書 lasts."""

    card_valid_until: dt.date | None = None


class SlaOverride(_Strict):
    """A municipality's own targets for one system; keys left out keep the stack's."""

    availability_percent: float | None = Field(None, gt=0, le=100)
    window: Duration | None = None
    service_hours: ServiceHours | None = None
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
    name: Name
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
        if len(code) != 6 or not code.isascii() or not code.isdigit():  # not ０１２０２５ nor ٠١٢٠٢٥
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
            if system not in info.data.get("systems", ()) and system not in SHARED_SERVICES:
                raise ValueError(
                    f"SLA for {system!r}, a system this municipality does not run; "
                    "add it to systems or remove the target"
                )
        return sla

    @property
    def services(self) -> tuple[str, ...]:
        """What the municipality's SLA covers: its business systems and the shared services."""
        return (*self.systems, *SHARED_SERVICES)

    def allocation_for(self, kind: str, defaults: Allocations) -> Allocation:
        return getattr(self.allocation, kind, None) or getattr(defaults, kind)


class StackConfig(_Strict):
    """Everything one stack declares; see Pulumi.yaml for each key's meaning."""

    stack: str = Field(pattern=r"^[a-z][a-z0-9]{0,11}$")
    image: ImageReference = "lgcloud/vm:latest"
    sites: dict[str, Site]
    segments: Segments
    allocations: Allocations = Allocations()
    municipalities: tuple[Municipality, ...] = Field(min_length=1)
    sla: SlaTarget = SlaTarget.model_validate({})  # every system of every municipality, unless it states its own
    backup: BackupPolicy = BackupPolicy.model_validate({})
    slm: SlmPolicy = SlmPolicy.model_validate({})
    linkage: LinkagePolicy = LinkagePolicy.model_validate({})
    monitoring: MonitoringPolicy = MonitoringPolicy.model_validate({})
    portal: PortalPolicy = PortalPolicy()

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

    def municipality_named(self, given: str) -> Municipality:
        """The municipality an operator named by id or 地方公共団体コード, or an OperatorError listing them."""
        try:
            return self.municipality(given)
        except KeyError:
            known = ", ".join(f"{m.id} ({m.code})" for m in self.municipalities)
            raise OperatorError(
                f"no municipality {given!r} in stack {self.stack}; known: {known}", exit_code=EXIT_BAD_INPUT
            ) from None

    def sla_for(self, municipality: Municipality, system: str) -> SlaTarget:
        """The targets one municipality's system is held to: its own over the stack's."""
        own = municipality.sla.get(system)
        overrides = own.model_dump(exclude_none=True) if own else {}
        return SlaTarget.model_validate({**self.sla.model_dump(), **overrides})
