"""``lgcloud restore``: a municipality's database as it was at a moment, on its restore VM."""

from __future__ import annotations

import argparse

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..ops.backup import RestoreTarget
from ..ops.drill.runbook import Step
from ..ops.restore import discard, restore, restore_in_place
from ..state.slm import planned_work
from .options import Options, wait_flag

__all__ = ["add"]


def run(opts: Options) -> int:
    values = opts.values()
    cfg = opts.config(values)
    args = opts.args
    with opts.hold("restore"):
        if args.discard:
            vm = discard(cfg, values, args.municipality)
            opts.output.done(f"{vm} and its volume removed; the live database was never touched")
            return 0
        if args.to:
            target = RestoreTarget.at(args.to)
        elif args.before_xid:
            target = RestoreTarget.before_xid(args.before_xid)
        else:
            target = RestoreTarget("latest")

        if args.target == "in-place":
            return _in_place(opts, target)

        def show(step: str, seconds: float) -> None:
            opts.output.err.print(f" [green]✓[/] {step:9} [dim]{seconds:.1f}s[/]")

        report = restore(cfg, values, args.municipality, target, show)
    if opts.flag("json"):
        opts.output.json(report.to_json())
    else:
        opts.output.done(
            f"{report.municipality} restored to {report.target} from backup {report.backup} on {report.vm}: "
            f"{report.residents} residents; restore and recovery took {report.recovery_seconds:.1f}s"
        )
        opts.output.note(
            f"look with `ssh -F .lgcloud/{cfg.stack}/ssh_config {report.vm} chpst -u postgres psql jumin`; "
            f"remove with `lgcloud restore --stack {cfg.stack} --municipality {report.municipality} --discard`"
        )
    return 0


def _in_place(opts: Options, target: RestoreTarget) -> int:
    """The live database put back to `target`: shown first, done only with --confirm."""
    args = opts.args
    if not args.confirm:
        raise OperatorError(
            f"an in-place restore of {args.municipality} to {target.describe()} takes every write after it out of "
            "service: the offices stop writing meanwhile, and the current clusters are kept aside "
            "(main.replaced-<time> on the primary and the replica), not served",
            "inspect first with a restore to a new VM (the default), then run again with --confirm",
            EXIT_BAD_INPUT,
        )

    def show(step: Step) -> None:
        opts.output.err.print(f" [green]✓[/] {step.name} [dim]{step.seconds:.1f}s  {step.detail}[/]", highlight=False)

    cfg = opts.config()
    municipality = cfg.municipality_named(args.municipality).id
    with planned_work(cfg.stack, "restore", f"in-place restore to {target.describe()}", [municipality]):
        steps = restore_in_place(cfg, args.municipality, target, show)
    total = sum(s.seconds for s in steps)
    opts.output.done(f"{args.municipality} serves its data as of {target.describe()} again ({total:.1f}s)")
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "restore a municipality's database to a moment, on a VM beside the live one, for inspection"
    sub = verbs.add_parser("restore", parents=[common], help=text, description=text)
    sub.add_argument("--municipality", required=True, help="id or 地方公共団体コード")
    target = sub.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="TIME", help="ISO 8601, e.g. 2026-12-01T10:30:00+09:00 (no offset: JST)")
    target.add_argument("--before-xid", metavar="XID", help="just before this transaction committed")
    target.add_argument("--latest", action="store_true", help="everything the WAL archive holds")
    target.add_argument("--discard", action="store_true", help="remove the restore VM and its volume")
    sub.add_argument(
        "--target",
        choices=("new", "in-place"),
        default="new",
        help="new: a restore VM beside the live one, for inspection (default); in-place: the live database "
        "itself, writes stopped meanwhile, its clusters kept aside",
    )
    sub.add_argument(
        "--confirm", action="store_true", help="with --target in-place: yes, take later writes out of service"
    )
    sub.add_argument("--json", action="store_true", help="print the report as JSON")
    wait_flag(sub)
    sub.set_defaults(run=run)
