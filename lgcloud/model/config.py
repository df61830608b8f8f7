"""Stack configuration: the one place that reads and validates what an operator declared.

The stack config lives in ``stacks/Pulumi.<stack>.yaml`` under the ``lgcloud:`` namespace,
with defaults declared once in ``Pulumi.yaml``. Every problem is reported with its key path::

    >>> load_stack("dev").municipalities[0].name
    'Ａ市'
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..paths import PROJECT_ROOT, STACKS_DIR
from .schema import StackConfig
from .topology import plan

__all__ = [
    "NAMESPACE",
    "ConfigInvalid",
    "Problem",
    "from_pulumi_config",
    "load_file",
    "load_stack",
    "parse",
    "read_file",
    "stack_file",
    "stack_name",
]

NAMESPACE = "lgcloud"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where, what value, and what to do."""

    path: str
    value: Any
    message: str

    def __str__(self) -> str:
        return f"{self.path} = {self.value!r}: {self.message}"


class ConfigInvalid(OperatorError):
    """Raised with every problem found; nothing has been created when it is raised."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{source}: {len(problems)} problem(s) in the stack config:\n{lines}",
            "nothing was created; fix the config and retry",
        )


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
    """Checks that span several keys: uniqueness, address plan, capacity (the plan knows every
    address and allocation)."""
    problems: list[Problem] = []
    for field in ("id", "name", "code"):
        counts = Counter(getattr(m, field) for m in cfg.municipalities)
        for i, m in enumerate(cfg.municipalities):
            value = getattr(m, field)
            if counts[value] > 1:
                problems.append(
                    Problem(
                        f"{NAMESPACE}:municipalities[{i}].{field}",
                        value,
                        f"duplicate {field}; each municipality needs its own",
                    )
                )

    named = [(f"{NAMESPACE}:segments.{k}", v) for k, v in cfg.segments]
    for i, m in enumerate(cfg.municipalities):
        named += [(f"{NAMESPACE}:municipalities[{i}].segments.{s}", n) for s, n in m.segments.items()]
    for a, (path_a, net_a) in enumerate(named):
        if net_a.prefixlen > 28:
            problems.append(Problem(path_a, str(net_a), "segment too small; use /28 or larger"))
        for path_b, net_b in named[a + 1 :]:
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
            problems.append(
                Problem(path, str(m.terminal), "reserved address (network, broadcast or the segment's router)")
            )

    try:
        topology = plan(cfg)
    except ValueError as exc:  # a segment too small for the VMs it must hold
        return problems + [Problem(f"{NAMESPACE}:segments", None, str(exc))]
    taken: dict[str, str] = {}
    for vm in topology.vms:
        for segment, address in vm.addresses.items():
            if address in taken:
                problems.append(
                    Problem(
                        f"{NAMESPACE}:vm {vm.name}", address, f"address on {segment} already used by {taken[address]}"
                    )
                )
            taken[address] = vm.name
    terminals = {f"{m.id}-terminal": i for i, m in enumerate(cfg.municipalities)}
    for m in cfg.municipalities:
        address = topology.service_addresses[m.id]
        holder = taken.get(address)
        if holder:
            path = (
                f"{NAMESPACE}:municipalities[{terminals[holder]}].terminal"
                if holder in terminals
                else f"{NAMESPACE}:vm {holder}"
            )
            problems.append(
                Problem(
                    path,
                    address,
                    f"{m.id}'s service address (the top of {m.access}, counting "
                    f"down one per municipality); give {holder} a lower address",
                )
            )
        taken[address] = f"{m.id}'s service address"

    for site, spec in cfg.sites.items():
        used = topology.allocated(site)
        for resource, unit in (("vcpus", ""), ("memory_mb", " MB")):
            have, need = getattr(spec.capacity, resource), getattr(used, resource)
            if need > have:
                problems.append(
                    Problem(
                        f"{NAMESPACE}:sites.{site}.capacity.{resource}",
                        have,
                        f"the VMs at {site} are allocated {need:g}{unit}; raise the capacity or lower allocations",
                    )
                )
    return problems


def parse(values: Mapping[str, Any], stack: str, source: str = "config") -> StackConfig:
    """Validate config values (keys without the ``lgcloud:`` prefix) into a StackConfig."""
    unknown_ns = [k for k in values if ":" in k]
    if unknown_ns:
        raise ConfigInvalid(
            source, [Problem(k, values[k], "unknown namespace; lgcloud keys start with 'lgcloud:'") for k in unknown_ns]
        )
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
    return root / STACKS_DIR.relative_to(PROJECT_ROOT) / f"Pulumi.{stack}.yaml"


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
