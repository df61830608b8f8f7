"""``lgcloud ca list|issue|revoke``: the offices' certificates for the LGWAN-ASP front."""

from __future__ import annotations

import argparse

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..model.schema import StackConfig
from ..ops.offices import push_revocations
from ..state.offices import OFFICE_DAYS, issue_office, offices, revoke_office
from .options import Options, wait_flag

__all__ = ["add"]


def _municipality(cfg: StackConfig, given: str | None, action: str) -> str:
    if not given:
        raise OperatorError(f"`lgcloud ca {action}` needs --municipality ID|CODE", exit_code=EXIT_BAD_INPUT)
    return cfg.municipality_named(given).id


def run(opts: Options) -> int:
    cfg = opts.config()
    action = opts.args.action
    if action == "list":
        found = offices(cfg.stack, [m.id for m in cfg.municipalities])
        if opts.flag("json"):
            opts.output.json(
                [
                    {
                        "municipality": c.municipality,
                        "serial": c.serial,
                        "not_after": c.not_after.isoformat(),
                        "revoked": c.revoked,
                    }
                    for c in found
                ]
            )
        else:
            opts.output.table(
                f"office certificates of {cfg.stack}",
                ("municipality", "serial", "valid until", "state"),
                [
                    (c.municipality, c.serial, f"{c.not_after:%Y-%m-%d}", "revoked" if c.revoked else "valid")
                    for c in found
                ],
                caption="an office without one gets one at the next `lgcloud configure`",
            )
        return 0
    municipality = _municipality(cfg, opts.args.municipality, action)
    if opts.args.days is not None and (action != "issue" or not 1 <= opts.args.days <= 825):
        raise OperatorError("--days goes with `issue`, from 1 to 825", exit_code=EXIT_BAD_INPUT)
    with opts.hold(f"ca {action}"):
        if action == "issue":
            issue_office(cfg.stack, municipality, opts.args.days or OFFICE_DAYS)
            opts.output.done(
                f"a new certificate for {municipality}'s office; `lgcloud configure --stack {cfg.stack} --limit "
                f"{municipality}-terminal` installs it (the one it has stays valid until revoked)"
            )
            return 0
        revoked = revoke_office(cfg.stack, municipality)
        if revoked is None:
            raise OperatorError(f"{municipality}'s office has no certificate to revoke", exit_code=EXIT_BAD_INPUT)
        gateways = push_revocations(cfg)
    opts.output.done(
        f"{municipality}'s office certificate {revoked.serial} revoked; {' and '.join(gateways)} refuse it from the "
        f"next connection. `lgcloud ca issue --municipality {municipality}` and `lgcloud configure` give it a new one"
    )
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "list, issue or revoke the offices' certificates for the LGWAN-ASP front"
    sub = verbs.add_parser("ca", parents=[common], help=text, description=text)
    sub.add_argument(
        "action",
        choices=("list", "issue", "revoke"),
        help="list: each office's certificate; issue: a new one; revoke: refused by the gateways at once",
    )
    sub.add_argument("--municipality", help="id or 地方公共団体コード (issue, revoke)")
    sub.add_argument("--days", type=int, help=f"how long an issued certificate lasts (default {OFFICE_DAYS})")
    sub.add_argument("--json", action="store_true", help="print the list as JSON")
    wait_flag(sub)
    sub.set_defaults(run=run)
