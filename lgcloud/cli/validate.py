"""``lgcloud validate``: check a stack config, and that its subnets are free on the engine."""

from __future__ import annotations

import argparse

from ..engine.stack import engine_conflicts
from ..model.config import ConfigInvalid
from ..model.topology import plan
from .options import Options

__all__ = ["add"]


def run(opts: Options) -> int:
    cfg = opts.config()
    if not opts.args.offline:
        problems = engine_conflicts(cfg)
        if problems:
            raise ConfigInvalid(str(opts.path), problems)
    topology = plan(cfg)
    opts.output.done(
        f"{opts.path}: stack {cfg.stack} is valid: {len(cfg.municipalities)} municipalities, "
        f"{len(topology.segments)} segments, {len(topology.vms)} VMs"
    )
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser("validate", parents=[common], help="check a stack config without creating anything")
    sub.add_argument("--offline", action="store_true", help="skip the check against networks on the engine")
    sub.set_defaults(run=run)
