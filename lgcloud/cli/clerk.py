"""``lgcloud clerk list|show|reset``: the clerks lgcloud provides in each municipality's 住民記録.

The first 管理者 (``kanri01``) creates every other clerk through the API; the 窓口 clerk
``kunren01`` is the one the drills sign in as. ``show`` prints an account's password, its TOTP
secret as an ``otpauth://`` URI (for an authenticator app) and the code of this moment: what a
clerk's authenticator would show. ``reset`` is the break-glass when no 管理者 can sign in: a new
password and secret for any clerk, set as postgres on the serving primary, sessions ended."""

from __future__ import annotations

import argparse

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..ops.clerks import reset_clerk
from ..ops.lab import Lab
from ..state.clerks import ADMINISTRATOR, PROVIDED, ClerkAccount, first_clerks, provided_clerk
from ..state.directory import state_dir
from .options import Options, wait_flag

__all__ = ["add"]


def run(opts: Options) -> int:
    cfg = opts.config()
    if opts.args.action == "list":
        accounts = first_clerks(cfg.stack, [m.id for m in cfg.municipalities])
        rows = [(m, a.clerk_id, a.role) for m, kept in accounts.items() for a in kept]
        if opts.flag("json"):
            opts.output.json([{"municipality": m, "clerk_id": c, "role": r} for m, c, r in rows])
        else:
            opts.output.table(
                f"clerks lgcloud provides in {cfg.stack}",
                ("municipality", "職員ID", "role"),
                rows,
                caption=f"kept in {state_dir(cfg.stack) / 'clerks.json'} (0600); a database gets them at "
                "`lgcloud configure`; `lgcloud clerk show --municipality ID` prints one",
            )
        return 0
    if not opts.args.municipality:
        needed = f"`lgcloud clerk {opts.args.action}` needs --municipality ID|CODE"
        raise OperatorError(needed, exit_code=EXIT_BAD_INPUT)
    municipality = cfg.municipality_named(opts.args.municipality).id
    clerk_id = opts.args.clerk or ADMINISTRATOR
    if opts.args.action == "reset":
        with opts.hold("clerk reset"), Lab(cfg) as lab:
            account = reset_clerk(lab, municipality, clerk_id)
        _show(opts, municipality, account)
        if clerk_id not in PROVIDED:
            opts.output.note(f"{clerk_id} chooses a password of their own at the next sign-in; hand these over once")
        return 0
    if clerk_id not in {a.clerk_id for a in first_clerks(cfg.stack, [municipality])[municipality]}:
        raise OperatorError(
            f"{clerk_id!r} is not a clerk lgcloud provides",
            "lgcloud keeps only the accounts `lgcloud clerk list` shows; a 管理者 keeps the others (POST /api/clerks)",
            EXIT_BAD_INPUT,
        )
    _show(opts, municipality, provided_clerk(cfg.stack, municipality, clerk_id))
    return 0


def _show(opts: Options, municipality: str, account: ClerkAccount) -> None:
    shown = {
        "municipality": municipality,
        "clerk_id": account.clerk_id,
        "role": account.role or "(as before)",
        "password": account.password,
        "totp_uri": account.totp_uri(f"jumin {municipality}"),
        "code": account.code(account.step()),
    }
    if opts.flag("json"):
        opts.output.json(shown)
    else:
        opts.output.table(
            f"{account.role} {account.clerk_id} of {municipality}",
            ("", ""),
            [(key, value) for key, value in shown.items()],
            caption="the code changes every 30 s and signs in once",
        )


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "list or show the clerks lgcloud provides (the first 管理者, the drills' 窓口 clerk)"
    sub = verbs.add_parser("clerk", parents=[common], help=text, description=text)
    sub.add_argument(
        "action",
        choices=("list", "show", "reset"),
        help="list: every provided account; show: one, with secrets; reset: new secrets for any clerk",
    )
    sub.add_argument("--municipality", help="id or 地方公共団体コード (show, reset)")
    sub.add_argument("--clerk", help=f"職員ID (show, reset; default {ADMINISTRATOR})")
    wait_flag(sub)
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.set_defaults(run=run)
