"""The seed's 番号連携 scenario, rehearsed from the offices: a person of one municipality declares
last year's income, moves to another, and the new municipality's 税 assesses them on the income
the former one provides through the 中間サーバー and the broker.

Every step is what a clerk does at an office terminal, signed in as the municipality's drills'
clerk (窓口), through the gateway; the 情報提供等記録 each side kept are then read from the
tenants' databases. The person is a rehearsal's own (a new name each time); their 個人番号 passes
from one registration to the next in memory only. The 住民票コード each registry gave is in the
result (``--json``), so that a script can check that it followed the person; the tables print
neither."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..model.naming import CHUKAN_DATABASE, service_url
from .clerks import ClerkSession, sign_in
from .drill.measure import primary_of
from .lab import Lab, LabError, Pair

__all__ = ["Exchange", "MoveIn", "Moved", "move_in", "move_person", "office_call", "pair_for_move"]

JST = ZoneInfo("Asia/Tokyo")
ATENA_NUMBER = re.compile(r"[0-9]{10}")
REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
REFERENCE = REQUEST_ID  # a registry's row is named by a UUID too
TAX_SYSTEM = "zei"
LINK_TIMEOUT = 60.0  # seconds for atena-link to tell the 中間サーバー (it looks every 2 s)


@dataclass(frozen=True)
class Exchange:
    """One side's 情報提供等記録 of the brokered query."""

    keeper: str  # the municipality whose tenant kept it
    side: str  # requester | provider
    position: int  # in the tenant's chain
    outcome: str
    office: str  # the requesting 事務
    items: list[str]


@dataclass(frozen=True)
class MoveIn:
    source: str  # municipality ids
    destination: str
    income_year: int
    income: int
    fiscal_year: int
    per_capita: int  # 均等割
    income_levy: int  # 所得割
    tax: int
    request_id: str  # of the brokered query
    resident_codes: dict[str, str]  # the 住民票コード each registry holds the person under, by municipality
    refs: dict[str, str]  # the registry's row of the person (what its URLs carry), by municipality
    steps: list[tuple[str, float]] = field(default_factory=list)  # (what, seconds)
    records: list[Exchange] = field(default_factory=list)


def office_call(
    lab: Lab, session: ClerkSession, system: str, method: str, path: str, body: dict | None = None
) -> tuple[int, dict]:
    """One request of a signed-in clerk from the municipality's terminal: (HTTP status, JSON body).
    The token and the body reach curl on stdin, never on a command line."""
    pair = lab.pair(session.municipality)
    url = shlex.quote(service_url(system, pair.id) + path)
    data = "-H 'Content-Type: application/json' --data-binary @- " if body is not None else ""
    command = (
        'IFS= read -r token; h=$(mktemp); printf "Authorization: Bearer %s\\n" "$token" > "$h"; '
        f"curl -sS --max-time 40 -X {method} -H @\"$h\" {data}-w '\\n%{{http_code}}' {url}; "
        's=$?; rm -f "$h"; exit $s'
    )
    sent = session.token + "\n" + (json.dumps(body, ensure_ascii=False) if body is not None else "")
    out = lab.run(pair.terminal, command, stdin=sent, timeout=60)
    answer, _, status = out.rpartition("\n")
    try:
        return int(status), json.loads(answer) if answer.strip() else {}
    except ValueError:
        raise LabError(f"{pair.terminal}: {system}.{pair.id} answered what is not JSON: {answer[:200]!r}") from None


def _expect(what: str, pair: Pair, answer: tuple[int, dict], status: int) -> dict:
    got, body = answer
    if got != status:
        raise LabError(f"{what} at {pair.name} answered {got}: {body.get('error', body)}")
    return body


def _checked(pattern: re.Pattern, value: object, what: str, pair: Pair) -> str:
    """A value an app VM answered with, before it goes into SQL run as postgres: a tenant's VM is
    not trusted."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise LabError(f"{pair.name}'s systems answered a malformed {what}; nothing is looked up with it")
    return value


def _wait_for(what: str, ready: Callable[[], bool], timeout: float = LINK_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise LabError(f"{what} did not happen within {timeout:.0f} s", "is atena-link running on the app VMs?")
        time.sleep(1)


def _tenant_holds(lab: Lab, pair: Pair, query: str) -> bool:
    return lab.sql(primary_of(lab, pair), query, database=CHUKAN_DATABASE).strip() == "1"


@dataclass(frozen=True)
class Moved:
    """A person moved by the rehearsal: as each registry answered, and the clerks who did it."""

    source: Pair
    destination: Pair
    income_year: int
    before: dict  # the registration at the source (ref, 住民票コード, 個人番号, 宛名番号)
    after: dict  # the registration at the destination
    clerks: tuple[ClerkSession, ClerkSession]


def pair_for_move(lab: Lab, source: str, destination: str) -> tuple[Pair, Pair]:
    """The two municipalities of a move, both running 税; OperatorError (exit 2) otherwise."""
    a, b = lab.pair(source), lab.pair(destination)
    if a.id == b.id:
        raise OperatorError(
            f"--from and --to name the same municipality ({a.id}): a move is between two", exit_code=EXIT_BAD_INPUT
        )
    for pair in (a, b):
        if TAX_SYSTEM not in lab.cfg.municipality(pair.id).systems:
            raise OperatorError(
                f"{pair.id} does not run 税 (systems of lgcloud:municipalities); the rehearsal assesses there",
                exit_code=EXIT_BAD_INPUT,
            )
    return a, b


def move_person(
    lab: Lab,
    a: Pair,
    b: Pair,
    income: int,
    step: Callable[[str], None] = lambda what: None,
    before_moving: Callable[[dict], None] = lambda resident: None,
) -> Moved:
    """A new person of `a` declares last year's `income` there, moves out, and moves in at `b`
    with the same codes; returns once both tenants of the 中間サーバー know of the move.
    `before_moving` is given the registration at `a` once its 副本 is there (a card issued then)."""
    today = dt.datetime.now(JST).date()
    income_year = today.year - 1
    at_a, at_b = sign_in(lab, a.id), sign_in(lab, b.id)
    step("clerks signed in at both offices")
    person = {
        "name": f"転居 {secrets.token_hex(3)}",
        "kana": "テンキョ ハナコ",
        "birth_date": "1985-06-15",
        "sex": "女",
        "address": f"{a.name}本町1-1",
        "event": "move-in",
        "event_date": dt.date(income_year, 1, 1).isoformat(),  # lived there through the income year
        "previous_address": "東京都千代田区千代田1-1",
    }
    resident = _expect("the registration", a, office_call(lab, at_a, "jumin", "POST", "/api/residents", person), 201)[
        "resident"
    ]
    step(f"registered at {a.name}")
    declared = {"year": income_year, "income": income}
    _expect(
        "the 申告",
        a,
        office_call(lab, at_a, TAX_SYSTEM, "POST", f"/api/residents/{resident['ref']}/income", declared),
        201,
    )
    atena_a = _checked(ATENA_NUMBER, resident["atena_number"], "宛名番号", a)
    _wait_for(
        f"{a.name}'s 副本 of the income",
        lambda: _tenant_holds(
            lab, a, f"SELECT count(*) FROM chukan.fuhon WHERE atena_number = '{atena_a}' AND item = '前年の所得'"
        ),
    )
    step(f"{income_year}年分 income declared at {a.name}, its 副本 in the 中間サーバー")
    before_moving(resident)
    moved_out = {"event_date": today.isoformat(), "destination": b.name}
    _expect(
        "the 転出",
        a,
        office_call(lab, at_a, "jumin", "POST", f"/api/residents/{resident['ref']}/move-out", moved_out),
        200,
    )
    arrival = {
        **person,
        "address": f"{b.name}中央2-2",
        "event_date": today.isoformat(),
        "previous_address": person["address"],
        "resident_code": resident["resident_code"],
        "my_number": resident["my_number"],
    }
    newcomer = _expect("the 転入", b, office_call(lab, at_b, "jumin", "POST", "/api/residents", arrival), 201)[
        "resident"
    ]
    atena_b = _checked(ATENA_NUMBER, newcomer["atena_number"], "宛名番号", b)
    _wait_for(
        "the 中間サーバー learning of the move",
        lambda: (
            _tenant_holds(lab, b, f"SELECT count(*) FROM chukan.linked WHERE atena_number = '{atena_b}'")
            and _tenant_holds(
                lab,
                a,
                f"SELECT count(*) FROM chukan.linked WHERE atena_number = '{atena_a}' AND residence = 'former'",
            )
        ),
    )
    step(f"moved out of {a.name}, moved in at {b.name}, both linked")
    return Moved(a, b, income_year, resident, newcomer, (at_a, at_b))


def move_in(
    lab: Lab, source: str, destination: str, income: int, before_moving: Callable[[dict], None] = lambda r: None
) -> MoveIn:
    """Rehearse the move of a new person from `source` to `destination` (ids or codes)."""
    a, b = pair_for_move(lab, source, destination)
    fiscal_year = dt.datetime.now(JST).date().year
    steps: list[tuple[str, float]] = []
    started = time.monotonic()

    def step(what: str) -> None:
        nonlocal started
        steps.append((what, round(time.monotonic() - started, 2)))
        started = time.monotonic()

    moved = move_person(lab, a, b, income, step, before_moving)
    resident, newcomer, at_b, income_year = moved.before, moved.after, moved.clerks[1], moved.income_year
    assessed = _expect(
        "the assessment",
        b,
        office_call(
            lab, at_b, TAX_SYSTEM, "POST", f"/api/residents/{newcomer['ref']}/assessment", {"fiscal_year": fiscal_year}
        ),
        201,
    )
    step(f"{fiscal_year}年度 assessed at {b.name} on the income {a.name} provided")
    request_id = _checked(REQUEST_ID, assessed["income"]["request_id"], "request id", b)
    records = []
    for pair in (b, a):
        rows = lab.sql(
            primary_of(lab, pair),
            f"SELECT position, record FROM chukan.records WHERE record::jsonb ->> 'request_id' = '{request_id}'",
            database=CHUKAN_DATABASE,
        )
        for line in rows.splitlines():
            position, _, text = line.partition("|")
            record = json.loads(text)
            records.append(
                Exchange(pair.id, record["side"], int(position), record["outcome"], record["office"], record["items"])
            )
    tax = assessed["assessment"]
    return MoveIn(
        a.id,
        b.id,
        income_year,
        tax["income"],
        fiscal_year,
        tax["per_capita"],
        tax["income_levy"],
        tax["tax"],
        request_id,
        {a.id: resident["resident_code"], b.id: newcomer["resident_code"]},
        {a.id: _checked(REFERENCE, resident["ref"], "ref", a), b.id: _checked(REFERENCE, newcomer["ref"], "ref", b)},
        steps,
        records,
    )
