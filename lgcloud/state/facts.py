"""What the roles published about the configured lab (``facts.json``): where its Prometheus
listens and which systems the offices probe. The roles' defaults are the only source of those
ports and names; a configure run hands them over (Ansible's ``set_stats``) and they are kept
here, so the controller never reads a role's files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import EXIT_NOT_EVALUATED, OperatorError
from .directory import state_dir, write_atomic

__all__ = ["LabFacts", "lab_facts", "record_facts"]


@dataclass(frozen=True)
class LabFacts:
    prometheus_url: str  # the monitor's Prometheus, on its mgmt address
    probed_systems: tuple[str, ...]  # the business systems the offices probe: those the lab serves


def lab_facts(stack: str) -> LabFacts:
    """The facts of the last configure run that reached the monitor; OperatorError (exit 3) before any."""
    path = state_dir(stack) / "facts.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return LabFacts(document["prometheus_url"], tuple(document["probed_systems"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise OperatorError(
            f"stack {stack} has no monitor configured yet ({path} is missing or unreadable)",
            f"run `lgcloud configure --stack {stack}` (or `make up`)",
            EXIT_NOT_EVALUATED,
        ) from None


def record_facts(stack: str, published: dict[str, Any]) -> LabFacts | None:
    """Keep what a configure run's roles published (`lgcloud_facts`); None when none did (a run
    limited to other hosts, or one that failed before the monitor), and the old facts stay."""
    facts = published.get("lgcloud_facts")
    if not isinstance(facts, dict):
        return None
    kept = LabFacts(str(facts["prometheus_url"]), tuple(str(s) for s in facts["probed_systems"]))
    write_atomic(state_dir(stack) / "facts.json", json.dumps(asdict(kept), indent=2), 0o644)
    return kept
