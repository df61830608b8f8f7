"""``lgcloud maintenance start|end|list``: planned work outside the tool (計画停止), recorded so that
contractual availability leaves it out; the lab records its own `up`, `configure`, restores,
drills and failbacks itself."""

from __future__ import annotations

import argparse
import datetime as dt

from ..model.calendar import JST
from ..state.slm import end_maintenance, maintenance_windows, start_maintenance
from .options import Options

__all__ = ["add"]


def _when(at: float | None) -> str:
    return "open" if at is None else dt.datetime.fromtimestamp(at, JST).strftime("%Y-%m-%d %H:%M:%S")


def _scope(opts: Options) -> list[str]:
    cfg = opts.config()
    return [cfg.municipality_named(m).id for m in opts.args.municipality or ()]


def run_start(opts: Options) -> int:
    window = start_maintenance(opts.stack, opts.args.reason, _scope(opts))
    opts.output.done(
        f"maintenance window {window.id} open for {', '.join(window.municipalities) or 'the whole stack'} "
        f"since {_when(window.start)} JST; end it with `lgcloud maintenance end --stack {opts.stack}"
        + "".join(f" --municipality {m}" for m in window.municipalities)
        + "`"
    )
    return 0


def run_end(opts: Options) -> int:
    window = end_maintenance(opts.stack, opts.args.id, _scope(opts))
    assert window.end is not None
    opts.output.done(
        f"maintenance window {window.id} ({window.reason}) closed: {(window.end - window.start) / 60:.1f} min"
    )
    return 0


def run_list(opts: Options) -> int:
    opts.config()
    windows = maintenance_windows(opts.stack)
    if opts.flag("json"):
        opts.output.json([w.__dict__ for w in windows])
        return 0
    opts.output.table(
        f"planned work on stack {opts.stack} (JST)",
        ("id", "kind", "reason", "by", "start", "end", "municipalities"),
        [
            (str(w.id), w.kind, w.reason, w.by, _when(w.start), _when(w.end), ", ".join(w.municipalities) or "all")
            for w in windows
        ],
        right=("id",),
    )
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sub = verbs.add_parser("maintenance", help="record planned work (計画停止) done outside the tool")
    actions = sub.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", parents=[common], help="open a maintenance window now")
    start.add_argument("--reason", required=True, help="what is done, e.g. 'OS patching of the app VMs'")
    start.set_defaults(run=run_start)
    end = actions.add_parser("end", parents=[common], help="close the open window of that scope (or --id N)")
    end.add_argument("--id", type=int, help="the window's number (lgcloud maintenance list)")
    end.set_defaults(run=run_end)
    for action in (start, end):
        action.add_argument(
            "--municipality", action="append", help="only this municipality (id or code; repeatable; default all)"
        )
    listing = actions.add_parser("list", parents=[common], help="every window recorded, the lab's own included")
    listing.add_argument("--json", action="store_true", help="machine-readable")
    listing.set_defaults(run=run_list)
