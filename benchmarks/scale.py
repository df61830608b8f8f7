"""Scale: `lgcloud up --stack scale` (30 municipalities, 154 VMs on 10.101/16).

    /tmp/venv/bin/python benchmarks/scale.py [--noop-runs 3] [--keep]

Reports the cold up's wall time and the lgcloud process's peak RSS, the memory the VMs use
once up, and a no-change re-up; then takes the stack down unless --keep.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from common import LGCLOUD, print_table, run, save

from lgcloud.engine import connect
from lgcloud.model.naming import STACK_LABEL

STACK = "scale"
CGROUP = Path("/sys/fs/cgroup/memory/docker")  # cgroup v1 with the cgroupfs driver, as on the lab host


def containers_memory(stack: str) -> tuple[int, int, int]:
    """(containers, summed memory.usage_in_bytes, summed usage less inactive file cache: `docker stats`' figure)."""
    ids = [c["Id"] for c in connect().api.containers(filters={"label": f"{STACK_LABEL}={stack}"})]
    usage = stats = 0
    for container_id in ids:
        group = CGROUP / container_id
        used = int((group / "memory.usage_in_bytes").read_text())
        counters = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
        usage += used
        stats += used - int(counters.get("total_inactive_file", 0))
    return len(ids), usage, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop-runs", type=int, default=3, help="no-change re-ups; the median counts")
    parser.add_argument("--keep", action="store_true", help="leave the stack up afterwards")
    args = parser.parse_args(argv)
    if connect().api.containers(all=True, filters={"label": f"{STACK_LABEL}={STACK}"}):
        # Someone's stack, or a kept one: a cold figure needs it absent, and it is not ours to remove.
        raise SystemExit(f"stack {STACK} is already up; `{LGCLOUD} down --stack {STACK}` first")

    lgcloud = [LGCLOUD, "up", "--stack", STACK]
    try:
        cold = run(*lgcloud)
        vms, usage, stats = containers_memory(STACK)
        noop = [run(*lgcloud) for _ in range(args.noop_runs)]
    finally:
        down = None if args.keep else run(LGCLOUD, "down", "--stack", STACK, check=False)

    mib = 1024 * 1024
    noop_median = statistics.median(r.seconds for r in noop)
    print_table(
        f"stack {STACK}: {vms} VMs",
        [
            ("lgcloud up (cold, incl. SSH wait)", f"{cold.seconds:7.2f} s  ({cold.seconds / vms:.3f} s/VM)"),
            ("lgcloud up peak RSS", f"{cold.max_rss_mb:7.1f} MiB"),
            ("VMs' memory, cgroup usage", f"{usage / mib:7.1f} MiB  ({usage / mib / vms:.1f} MiB/VM)"),
            ("VMs' memory, as docker stats", f"{stats / mib:7.1f} MiB  ({stats / mib / vms:.1f} MiB/VM)"),
            (
                f"lgcloud up, no change (×{len(noop)})",
                f"{noop_median:7.2f} s  [{', '.join(f'{r.seconds:.2f}' for r in noop)}], "
                f"peak RSS {max(r.max_rss_mb for r in noop):.1f} MiB",
            ),
            ("lgcloud down", f"{down.seconds:7.2f} s" if down else "kept (--keep)"),
        ],
    )
    path = save(
        "scale",
        {
            "stack": STACK,
            "vms": vms,
            "up_seconds": cold.seconds,
            "up_peak_rss_mib": cold.max_rss_mb,
            "vms_memory_usage_mib": usage / mib,
            "vms_memory_stats_mib": stats / mib,
            "noop_seconds": [r.seconds for r in noop],
            "noop_median_seconds": noop_median,
            "noop_peak_rss_mib": max(r.max_rss_mb for r in noop),
            "down_seconds": down.seconds if down else None,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
