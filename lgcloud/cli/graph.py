"""``lgcloud graph``: draw the stack's topology (graphviz)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..observe.graph import render
from .options import Options

__all__ = ["add"]


def run(opts: Options) -> int:
    path = render(opts.config(), Path(opts.args.out))
    opts.output.done(f"wrote {path}")
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser("graph", parents=[common], help="draw the stack's topology (graphviz)")
    sub.add_argument("--out", default="docs/topology.png", help="image to write (.png or .svg)")
    sub.set_defaults(run=run)
