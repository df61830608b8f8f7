"""``lgcloud exporter``: serve the lab's facts to Prometheus from the controller, in the
foreground or (``--detach``, what `make up` runs) in the background; ``--stop`` ends it."""

from __future__ import annotations

import argparse

from ..model.naming import EXPORTER_PORT
from ..observe import exporter
from .options import Options

__all__ = ["add"]


def run(opts: Options) -> int:
    cfg = opts.config()
    if opts.args.stop:
        stopped = exporter.stop(cfg.stack)
        opts.output.done(f"exporter of stack {cfg.stack} {'stopped' if stopped else 'was not running'}")
    elif opts.args.detach:
        pid = exporter.detach(cfg, opts.args.port)
        opts.output.done(
            f"exporter of stack {cfg.stack} on http://{exporter.exporter_address(cfg)}:"
            f"{opts.args.port}/metrics (pid {pid})"
        )
    else:
        exporter.serve(cfg, opts.args.port)
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser(
        "exporter", parents=[common], help="serve the lab's facts (allocation, use, SLA targets, drills) to Prometheus"
    )
    sub.add_argument(
        "--port",
        type=int,
        default=EXPORTER_PORT,
        help=f"port on the mgmt segment's first address (default {EXPORTER_PORT})",
    )
    how = sub.add_mutually_exclusive_group()
    how.add_argument("--detach", action="store_true", help="(re)start it in the background and return")
    how.add_argument("--stop", action="store_true", help="stop the background exporter")
    sub.set_defaults(run=run)
