"""``lgcloud card issue|revoke|list``: 公的個人認証's 個人番号カード, issued by the lab's J-LIS stand-in.

``issue --municipality ID --resident REF --pin PIN --out FILE`` writes a card (PKCS#12, opened
with the PIN) for a current resident, named by the registry's ref; a card the resident had is
revoked as superseded. ``revoke`` revokes the resident's card. ``list`` shows the cards, after
revoking those whose facts changed (the resident moved away or changed name). ``open --card FILE --pin
PIN`` is the card reader: the certificate and key beside the card for a TLS client (curl), a wrong
PIN counted against the card, three in a row locking it."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..ops.cards import check_request, issue, revoke_changed
from ..ops.lab import Lab
from ..ops.portal import push_card_revocations
from ..state.cards import Card, WrongPin, card_authority, cards, read_card, revoke_card
from .options import Options, wait_flag

__all__ = ["add"]


def _needs(opts: Options, action: str, *flags: str) -> None:
    missing = [f"--{f}" for f in flags if not getattr(opts.args, f)]
    if missing:
        raise OperatorError(f"`lgcloud card {action}` needs {' and '.join(missing)}", exit_code=EXIT_BAD_INPUT)


def _state(card: Card) -> str:
    if card.revoked_at is not None:
        return f"revoked ({card.reason})"
    if card.locked:
        return "locked (wrong PINs)"
    return "valid" if card.valid else "expired"


def run(opts: Options) -> int:
    cfg = opts.config()
    action = opts.args.action
    municipality = cfg.municipality_named(opts.args.municipality).id if opts.args.municipality else None
    _needs(
        opts,
        action,
        *{
            "issue": ("municipality", "resident", "pin", "out"),
            "revoke": ("municipality", "resident"),
            "open": ("card", "pin"),
        }.get(action, ()),
    )
    if action == "open":
        return _open(opts, cfg.stack, Path(opts.args.card), opts.args.pin)
    if action == "issue":
        check_request(opts.args.pin, Path(opts.args.out))
    with opts.hold(f"card {action}"), Lab(cfg) as lab:
        if action == "issue":
            assert municipality is not None
            card = issue(lab, municipality, opts.args.resident, opts.args.pin, Path(opts.args.out))
            opts.output.done(
                f"card {card.serial} for {municipality}'s resident {card.resident} in {opts.args.out} (0600), "
                f"valid until {card.not_after[:10]}; it opens with its PIN"
            )
            return 0
        if action == "revoke":
            assert municipality is not None
            revoked = revoke_card(cfg.stack, municipality, opts.args.resident)
            if revoked and not push_card_revocations(lab):
                opts.output.note("the portal does not run: it loads the CRL at its next configure")
            if not revoked:
                raise OperatorError(
                    f"{municipality}'s resident {opts.args.resident} has no card to revoke",
                    "`lgcloud card list` shows the cards",
                    exit_code=EXIT_BAD_INPUT,
                )
            opts.output.done(f"card {', '.join(c.serial for c in revoked)} revoked: on the CRL from now on")
            return 0
        changed = revoke_changed(lab)
        if changed:
            push_card_revocations(lab)
    found = cards(cfg.stack, municipality)
    if opts.flag("json"):
        opts.output.json([{**asdict(c), "state": _state(c)} for c in found])
        return 0
    opts.output.table(
        f"個人番号カード of {cfg.stack}",
        ("serial", "municipality", "resident (registry ref)", "valid until", "state"),
        [(c.serial, c.municipality, c.resident, c.not_after[:10], _state(c)) for c in found],
        caption=f"{len(changed)} revoked just now: their facts changed (a move away, a new name)" if changed else None,
    )
    return 0


def _open(opts: Options, stack: str, card: Path, pin: str) -> int:
    if not card.is_file():
        raise OperatorError(
            f"{card} is not a card file; give --card the file `card issue` wrote", exit_code=EXIT_BAD_INPUT
        )
    try:
        reader = read_card(stack, card, pin)
    except WrongPin as wrong:
        more = f"{wrong.left} more wrong PINs lock the card" if wrong.left else "the card is locked now"
        raise OperatorError(
            f"the PIN does not open {card} (counted against the card: {more})",
            "a locked card opens no more: the municipality issues a new one (lgcloud card issue)",
            exit_code=EXIT_BAD_INPUT,
        ) from None
    except ValueError as refused:
        raise OperatorError(f"{card}: {refused}", exit_code=EXIT_BAD_INPUT) from None
    opts.output.done(
        f"card opened: {reader.certificate} and {reader.key} (0600) for a TLS client, e.g. "
        f"curl --cert {reader.certificate} --key {reader.key} --cacert {card_authority(stack)} https://<portal>/"
    )
    return 0


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "issue, revoke or list the residents' 個人番号カード (公的個人認証 for マイ・ポータル)"
    sub = verbs.add_parser("card", parents=[common], help=text, description=text)
    sub.add_argument(
        "action",
        choices=("issue", "revoke", "list", "open"),
        help="issue: a new card file; revoke: the resident's card onto the CRL; list: every card and its state; "
        "open: the card reader (its certificate and key for a TLS client)",
    )
    sub.add_argument("--municipality", help="id or 地方公共団体コード")
    sub.add_argument("--resident", help="the resident's ref in the registry (as in /api/residents/<ref>)")
    sub.add_argument("--pin", help="issue, open: the card's PIN, four digits")
    sub.add_argument("--card", help="open: the card file")
    sub.add_argument("--out", help="issue: the card file to write (PKCS#12; never over an existing file)")
    sub.add_argument("--json", action="store_true", help="list: print the cards as JSON")
    wait_flag(sub)
    sub.set_defaults(run=run)
