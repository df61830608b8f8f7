"""``lgcloud status``: the stack's VMs and segments as the engine reports them, and which
municipalities a drill left served from the backup site."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from ..engine import inventory
from ..state.failover import served_from_backup
from .options import Options

__all__ = ["add"]


def run(opts: Options) -> int:
    cfg = opts.config()
    vms, segments = inventory(cfg)
    moved = served_from_backup(cfg.stack)
    if opts.flag("json"):
        opts.output.json(
            {
                "stack": cfg.stack,
                "vms": [asdict(v) for v in vms],
                "segments": [asdict(s) for s in segments],
                "served_from_backup": {m: asdict(f) for m, f in moved.items()},
            }
        )
        return 0
    if not vms and not segments:
        opts.output.note(f"stack {cfg.stack} is not up; bring it up with `lgcloud up --stack {cfg.stack}`")
        return 0
    opts.output.table(
        f"stack {cfg.stack}",
        ("vm", "site", "municipality", "role", "state", "addresses"),
        [
            (
                v.name,
                v.site,
                v.municipality,
                v.role,
                f"[{'green' if v.state == 'running' else 'red'}]{v.state}[/]",
                " ".join(f"{k}={a}" for k, a in v.addresses.items()),
            )
            for v in vms
        ],
    )
    if moved:
        opts.output.err.print(
            f"[yellow]served from the backup site since a drill:[/] {', '.join(moved)}; "
            f"`lgcloud drill failback --stack {cfg.stack}` switches back"
        )
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser("status", parents=[common], help="show the stack's VMs and segments as they are now")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.set_defaults(run=run)
