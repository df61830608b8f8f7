"""公的個人認証's cards, against the lab: a card is issued to a resident the registry holds, and a
card whose facts changed (転出, a change of name) is revoked, as J-LIS does.

The registry is asked as postgres on the municipality's serving database, by the row's `ref`
(what the registry's own URLs carry): no 住民票コード or 個人番号 passes through here. A new card
is registered by a 窓口 clerk of the municipality (POST /api/residents/<ref>/card, recorded in
the アクセス記録), which tells the broker through the 中間サーバー which person it stands for."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..state.cards import PIN, Card, issue_card, revoke_card, withdraw_card
from ..state.cards import cards as issued_cards
from .clerks import sign_in
from .drill.measure import primary_of
from .lab import Lab, LabError
from .move_in import office_call
from .portal import push_card_revocations

__all__ = ["CARD_YEARS", "RESIDENT_REF", "card_expiry", "check_request", "issue", "revoke_changed"]

RESIDENT_REF = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LINK_WAIT = 30.0  # seconds a card's registration waits for the linkage to know the person as they are now
# What the linkage answers until then: a new resident has no 符号 yet (the 中間サーバー), or a change
# of name has yet to reach the 中間サーバー (the registry).
NOT_READY = ("has no 符号 yet", "has not reached the 中間サーバー yet")
CARD_YEARS = 5  # a 利用者証明用電子証明書 lasts five years unless the stack says until when
JST = ZoneInfo("Asia/Tokyo")


def card_expiry(valid_until: dt.date | None, now: dt.datetime) -> dt.datetime:
    """The last moment of a card issued at `now`: the end of `valid_until` in Japan, or five years on."""
    last_day = valid_until or now.astimezone(JST).date().replace(year=now.astimezone(JST).year + CARD_YEARS)
    end = dt.datetime.combine(last_day, dt.time(23, 59, 59), JST)
    if end <= now:
        raise OperatorError(
            f"lgcloud:portal.card_valid_until is {last_day}, which is past: no card issued now would be valid",
            "set a later date in the stack config",
            exit_code=EXIT_BAD_INPUT,
        )
    return end.astimezone(dt.UTC)


def _residence(lab: Lab, municipality: str, ref: str, issued_at: str | None = None) -> str | None:
    """'current' or 'former' for the registry's row `ref`, None when the registry has no such row;
    'renamed' for a current resident whose name changed after `issued_at` (a card's issue)."""
    if not RESIDENT_REF.fullmatch(ref):  # it is pasted into SQL that runs as postgres
        raise OperatorError(
            f"--resident {ref!r} is not a registry ref (the UUID in /api/residents/<ref>)", exit_code=EXIT_BAD_INPUT
        )
    since = dt.datetime.fromisoformat(issued_at).isoformat() if issued_at else None  # ours, parsed all the same
    renamed = f"WHEN facts_changed_at > '{since}'::timestamptz THEN 'renamed' " if since else ""
    found = lab.sql(
        primary_of(lab, lab.pair(municipality)),
        f"SELECT CASE WHEN moved_out_on IS NOT NULL THEN 'former' {renamed}ELSE 'current' END"
        f" FROM residents WHERE ref = '{ref}'",
    )
    return found or None


def check_request(pin: str, out: Path) -> None:
    """Refuse a PIN or a card file that cannot be, before anything is asked of the lab."""
    if not PIN.fullmatch(pin):
        raise OperatorError("--pin is the card's PIN: four digits (0-9)", exit_code=EXIT_BAD_INPUT)
    if out.exists():
        raise OperatorError(
            f"{out} exists; give another --out (a card file is never overwritten)", exit_code=EXIT_BAD_INPUT
        )
    if not out.parent.is_dir():
        raise OperatorError(f"{out.parent} is not a directory; give --out in one", exit_code=EXIT_BAD_INPUT)


def issue(lab: Lab, municipality: str, ref: str, pin: str, out: Path) -> Card:
    """A card for a current resident of `municipality`, written to `out`."""
    check_request(pin, out)
    not_after = card_expiry(lab.cfg.portal.card_valid_until, dt.datetime.now(dt.UTC))
    residence = _residence(lab, municipality, ref)
    if residence != "current":
        held = "no resident" if residence is None else "a resident who has moved away"
        raise OperatorError(
            f"{municipality}'s registry holds {held} at {ref}: a card is issued to a current resident",
            "the municipality the person lives in now issues the card",
            exit_code=EXIT_BAD_INPUT,
        )
    card = issue_card(lab.stack, municipality, ref, pin, not_after, out)
    registered = False
    try:
        session = sign_in(lab, municipality)
        deadline = time.monotonic() + LINK_WAIT
        while True:
            status, answer = office_call(
                lab, session, "jumin", "POST", f"/api/residents/{ref}/card", {"serial": card.serial}
            )
            # Within seconds a resident registered a moment ago gets their 符号, and a change of
            # name reaches the 中間サーバー (atena-link).
            ready = not any(reason in str(answer.get("error")) for reason in NOT_READY)
            if status != 409 or ready or time.monotonic() > deadline:
                break
            time.sleep(1)
        if status != 201:
            raise LabError(
                f"{municipality}'s registry did not register card {card.serial} ({status}): "
                f"{answer.get('error', answer)}",
                "the card was withdrawn (revoked, its file removed); issue it again once the linkage answers",
            )
        registered = True
    finally:
        if not registered:
            withdraw_card(lab.stack, card.serial, out)
        push_card_revocations(lab)  # the card the resident had before is superseded (this one too, if withdrawn)
    return card


def revoke_changed(lab: Lab) -> list[Card]:
    """Revoke every unrevoked card whose facts changed: its resident moved away from the issuing
    municipality (or the registry no longer holds the row), or changed name since; the cards it revoked."""
    revoked: list[Card] = []
    for card in issued_cards(lab.stack):
        if card.revoked_at is not None:
            continue
        residence = _residence(lab, card.municipality, card.resident, card.issued_at)
        if residence != "current":
            reason = "renamed" if residence == "renamed" else "moved"
            revoked += revoke_card(lab.stack, card.municipality, card.resident, reason)
    return revoked
