"""``lgcloud linkage verify-records|move-in``: the 情報提供等記録 chains, and the seed's scenario.

``verify-records``: are the 情報提供等記録 chains intact where they are kept? Each municipality's
tenant of the 中間サーバー and the broker append their records to a hash chain; this walks each
chain on the controller and prints, per keeper, how many records it holds, the position of the
first broken link (a record changed, removed or slipped in), and whether the chain still holds
where it ended at the last intact check (the newest records removed, or the whole chain
recomputed, show there). Exit 1 when one is not intact, so that a script notices.

``purge-records [--yes]``: the tenants' records past the stack's retention (seven years at least),
shown; with --yes removed, the chain's base moved past them (lgcloud.ops.linkage.purge_records).

``move-in --from A --to B``: a new person of A declares last year's income at A's 税, moves to B,
and B's 税 assesses them on the income A provides through the 中間サーバー and the broker; prints
the steps, the assessment and each side's 情報提供等記録 (lgcloud.ops.move_in)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from ..errors import EXIT_BAD_INPUT, EXIT_FAILED, OperatorError
from ..ops.cards import revoke_changed
from ..ops.lab import Lab
from ..ops.linkage import purge_records, verify_records
from ..ops.move_in import move_in
from ..ops.portal import push_card_revocations
from .options import Options

__all__ = ["add"]


def run(opts: Options) -> int:
    return {"move-in": rehearse, "purge-records": purge, "verify-records": verify}[opts.args.action](opts)


def purge(opts: Options) -> int:
    cfg = opts.config()
    chosen = [cfg.municipality_named(opts.args.municipality).id] if opts.args.municipality else None
    apply = opts.flag("yes")
    with Lab(cfg) as lab:
        purges = purge_records(lab, chosen, apply=apply)
    if opts.flag("json"):
        opts.output.json([asdict(p) for p in purges])
        return 0
    years = cfg.linkage.record_retention_years
    opts.output.table(
        f"情報提供等記録 of {cfg.stack} older than {years} years (lgcloud:linkage.record_retention_years)",
        ("keeper", "read on", "records", "positions", "from", "to", ""),
        [
            (
                p.keeper,
                p.vm,
                str(p.records),
                f"{p.first}–{p.last}" if p.records else "—",
                p.oldest or "—",
                p.newest or "—",
                "purged" if p.purged else ("would be purged" if p.records else "nothing to purge"),
            )
            for p in purges
        ],
        caption="never the records of the last "
        f"{years} years, nor a record before a younger one, nor a chain's newest; the chain's base keeps its link",
    )
    if not apply and any(p.records for p in purges):
        opts.output.note("nothing was removed; run again with --yes to purge these records")
    return 0


def rehearse(opts: Options) -> int:
    cfg = opts.config()
    if not (opts.args.source and opts.args.destination):
        raise OperatorError(
            "move-in needs --from and --to: the municipalities (id or 地方公共団体コード)", exit_code=EXIT_BAD_INPUT
        )
    if not 0 <= opts.args.income <= 10**11:
        raise OperatorError("--income is yen of 所得, from 0 to 100000000000", exit_code=EXIT_BAD_INPUT)
    with Lab(cfg) as lab:
        moved = move_in(lab, opts.args.source, opts.args.destination, opts.args.income)
        # 転出 changed the facts of any card the person had: J-LIS revokes it, the portal refuses it.
        if revoke_changed(lab):
            push_card_revocations(lab)
    if opts.flag("json"):
        opts.output.json(asdict(moved))
        return 0
    opts.output.table(
        f"転居 {moved.source} → {moved.destination} in {cfg.stack}",
        ("step", "seconds"),
        [(what, f"{seconds:.2f}") for what, seconds in moved.steps],
    )
    opts.output.table(
        f"{moved.fiscal_year}年度 個人住民税 at {moved.destination}",
        ("所得", "均等割", "所得割", "税額"),
        [(f"{moved.income:,}", f"{moved.per_capita:,}", f"{moved.income_levy:,}", f"{moved.tax:,}")],
        caption=f"the {moved.income_year}年分 income as {moved.source} provided it (request {moved.request_id})",
    )
    opts.output.table(
        "情報提供等記録 of the query",
        ("kept by", "side", "position", "事務", "items", "outcome"),
        [(r.keeper, r.side, str(r.position), r.office, ", ".join(r.items), r.outcome) for r in moved.records],
        caption=(
            f"マイ・ポータル: lgcloud card issue --stack {cfg.stack} --municipality {moved.destination} "
            f"--resident {moved.refs[moved.destination]} --pin NNNN --out card.p12"
        ),
    )
    return 0


def verify(opts: Options) -> int:
    cfg = opts.config()
    chosen = [cfg.municipality_named(opts.args.municipality).id] if opts.args.municipality else None
    with Lab(cfg) as lab:  # reads only: no hold on the stack
        checks = verify_records(lab, chosen, reanchor=opts.flag("reanchor"))
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
    text = "番号連携: check the 情報提供等記録 chains; rehearse a move between two municipalities"
    sub = verbs.add_parser("linkage", parents=[common], help=text, description=text)
    sub.add_argument(
        "action",
        choices=("verify-records", "move-in", "purge-records"),
        help="verify-records: walk every chain, report breaks; move-in: the seed's scenario from the offices; "
        "purge-records: show (with --yes: remove) the tenants' records past their retention",
    )
    sub.add_argument("--municipality", help="verify-records, purge-records: id or 地方公共団体コード: that tenant only")
    sub.add_argument("--yes", action="store_true", help="purge-records: remove what is shown")
    sub.add_argument(
        "--reanchor",
        action="store_true",
        help="verify-records: take the chains as they are now as the anchors (once a shorter or rewritten "
        "chain has been looked into); their links are checked all the same",
    )
    sub.add_argument("--from", dest="source", help="move-in: the municipality the person leaves")
    sub.add_argument("--to", dest="destination", help="move-in: the municipality the person moves to")
    sub.add_argument("--income", type=int, default=3_600_000, help="move-in: the 所得 declared (yen; 3600000)")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.set_defaults(run=run)
