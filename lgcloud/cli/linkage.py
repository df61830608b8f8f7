"""``lgcloud linkage verify-records``: are the 情報提供等記録 chains intact where they are kept?

Each municipality's tenant of the 中間サーバー and the broker append their records to a hash chain;
this walks each chain on the controller and prints, per keeper, how many records it holds, the
position of the first broken link (a record changed, removed or slipped in), and whether the chain
still holds where it ended at the last intact check (the newest records removed, or the whole chain
recomputed, show there). Exit 1 when one is not intact, so that a script notices."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from ..errors import EXIT_FAILED
from ..ops.lab import Lab
from ..ops.linkage import verify_records
from .options import Options

__all__ = ["add"]


def run(opts: Options) -> int:
    cfg = opts.config()
    chosen = [cfg.municipality_named(opts.args.municipality).id] if opts.args.municipality else None
    with Lab(cfg) as lab:  # reads only: no hold on the stack
        checks = verify_records(lab, chosen)
    if opts.flag("json"):
        opts.output.json([{**asdict(check), "intact": check.intact} for check in checks])
    else:
        opts.output.table(
            f"情報提供等記録 of {cfg.stack}",
            ("keeper", "read on", "records", "links", "since the last check"),
            [
                (
                    c.keeper,
                    c.vm,
                    str(c.records),
                    "intact" if c.first_broken is None else f"broken at {c.first_broken}",
                    c.anchored,
                )
                for c in checks
            ],
            caption="broken at N: the record at position N, or one before it, was changed, removed or added; "
            "shorter or rewritten: records the last check saw were removed, or the chain was recomputed",
        )
    return 0 if all(c.intact for c in checks) else EXIT_FAILED


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "番号連携: check the 情報提供等記録 chains of the 中間サーバー's tenants and the broker"
    sub = verbs.add_parser("linkage", parents=[common], help=text, description=text)
    sub.add_argument("action", choices=("verify-records",), help="verify-records: walk every chain, report breaks")
    sub.add_argument("--municipality", help="id or 地方公共団体コード: that tenant's chain only")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.set_defaults(run=run)
