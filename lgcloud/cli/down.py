"""``lgcloud down``: remove every container and network of the stack, and nothing else."""

from __future__ import annotations

import argparse
import time

from ..engine import destroy
from ..state.chains import forget_anchors
from ..state.failover import forget_failovers
from ..state.restores import forget_restores
from ..state.slm import forget_in_service
from .deploy import show_change
from .options import Options, wait_flag

__all__ = ["add"]


def run(opts: Options) -> int:
    started = time.monotonic()
    cfg = opts.config()
    with opts.hold("down"), opts.output.err.status(f"removing stack {cfg.stack} …"):
        changes = destroy(cfg, show_change(opts), delete_data=opts.args.delete_data)
        forget_failovers(cfg.stack)  # the VMs a drill moved are gone with the stack
        forget_restores(cfg.stack)  # and the restore VMs with theirs
        if opts.args.delete_data:
            forget_anchors(cfg.stack)  # the chains they anchored are deleted with the databases
            forget_in_service(cfg.stack)  # its time series too: the service begins again at its next verification
    removed = [c for c in changes if c.action == "delete"]
    kept = [c.name for c in changes if c.action == "kept"]
    opts.output.done(f"stack {cfg.stack}: removed {len(removed)} resources ({time.monotonic() - started:.1f}s)")
    if kept:
        opts.output.note(
            f"data kept on {len(kept)} volume(s): {', '.join(kept)}; the next `lgcloud up` finds them again "
            "(`lgcloud down --delete-data` deletes them)"
        )
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser("down", parents=[common], help="remove every resource of the stack, and nothing else")
    sub.add_argument("-v", "--verbose", action="store_true", help="also list unchanged resources")
    sub.add_argument(
        "--delete-data", action="store_true", help="also delete the stack's data volumes (databases, time series)"
    )
    wait_flag(sub)
    sub.set_defaults(run=run)
