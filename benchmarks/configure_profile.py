"""Where a `lgcloud configure` spent its time, from the newest run's ansible-runner events.

    .venv/bin/python benchmarks/configure_profile.py --stack scale [--top 25]

Per task (role: task): host-seconds summed over every host, hosts, the slowest host's seconds;
per role the same; and the run's wall time against the summed host-seconds (how parallel it was).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from common import print_table

from lgcloud.state.directory import state_dir

RESULTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")


@dataclass
class Spent:
    seconds: float = 0.0
    slowest: float = 0.0
    hosts: set[str] = field(default_factory=set)

    def add(self, host: str, seconds: float) -> None:
        self.seconds += seconds
        self.slowest = max(self.slowest, seconds)
        self.hosts.add(host)


def newest_run(stack: str) -> Path:
    runs = sorted((state_dir(stack) / "ansible" / "artifacts").glob("*/job_events"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"stack {stack} has no configure run to profile; run `lgcloud configure --stack {stack}`")
    return runs[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--top", type=int, default=25, help="tasks shown, the most host-seconds first")
    args = parser.parse_args(argv)
    events = newest_run(args.stack)
    tasks: dict[str, Spent] = defaultdict(Spent)
    roles: dict[str, Spent] = defaultdict(Spent)
    first = last = None
    for path in events.glob("*.json"):
        event = json.loads(path.read_text(encoding="utf-8"))
        data = event.get("event_data", {})
        if event.get("event") not in RESULTS or "duration" not in data:
            continue
        role = data.get("role") or "(play)"
        seconds = float(data["duration"])
        tasks[f"{role}: {data.get('task', '?')}"].add(data["host"], seconds)
        roles[role].add(data["host"], seconds)
        start, end = dt.datetime.fromisoformat(data["start"]), dt.datetime.fromisoformat(data["end"])
        first = start if first is None or start < first else first
        last = end if last is None or end > last else last
    if first is None or last is None:
        raise SystemExit(f"{events} holds no task results")
    total = sum(s.seconds for s in roles.values())
    wall = (last - first).total_seconds()

    def rows(spent: dict[str, Spent], top: int) -> list[tuple[str, str]]:
        ranked = sorted(spent.items(), key=lambda kv: kv[1].seconds, reverse=True)[:top]
        return [
            (
                name[:90],
                f"{s.seconds:8.1f} host-s  {100 * s.seconds / total:5.1f} %  "
                f"{len(s.hosts):4d} hosts  slowest {s.slowest:6.2f} s",
            )
            for name, s in ranked
        ]

    print_table(f"configure of {args.stack} by role ({events.parent.name})", rows(roles, len(roles)))
    print_table(f"the {args.top} costliest tasks", rows(tasks, args.top))
    print(f"wall {wall:.1f} s from the first task's start to the last one's end; {total:.0f} host-seconds of tasks")
    print(f"parallelism {total / wall:.1f} hosts at a time on average")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
