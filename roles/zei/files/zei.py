"""税 (個人住民税) of one municipality: 課税情報 and the assessment, a JSON API beside 住民記録.

Runs under gunicorn on the municipality's app VM, with 住民記録's settings (``JUMIN_CONFIG``: the
database, the 中間サーバー, the sign-in limits) and its own (``ZEI_CONFIG``: the rates)::

    {"per_capita_levy": 5000, "income_levy_percent": 10, "basic_deduction": 430000,
     "exemption_income": 450000, "bodies": {"Ｂ町": "013021", …}}

Its data is the schema ``zei`` of the municipality's database, keyed by the 団体内統合宛名番号 of
the registry: it replicates, is backed up and follows every drill with the registry. A clerk signs
in once (the sessions are the database's), as 窓口:

- ``POST /api/residents/<ref>/income {"year": 2025, "income": 3600000}``: a 申告 of the year's 所得.
- ``POST /api/residents/<ref>/assessment {"fiscal_year": 2026[, "former_municipality": "013021"]}``:
  the 年度's 個人住民税 from the income of the year before: 均等割 plus 所得割 at a flat rate of the
  income less the basic deduction, nothing at or under the exemption. A resident who moved in
  during the 年度 declared that income where they lived before: it is asked of the former
  municipality (named by the clerk, or found from the 前住所) through the 中間サーバー and the
  broker, for 個人住民税の賦課, and kept with the request's id.
- ``POST /api/residents/<ref>/former-income {"year"[, "former_municipality"]}``: 所得照会, the
  former municipality's income of a year asked the same way and shown, not kept.
- ``GET /api/residents/<ref>/tax``: the resident's incomes and assessments.

Every income and assessment is queued, in its own transaction, as a 副本 for the 中間サーバー
(``fuhon_outbox``, sent by the atena-link service): 前年の所得 and 前年の課税情報. Every look at a
resident is an アクセス記録 for 地方税の賦課徴収に関する事務. The lab's assessment is the current
resident's, a simplification: the law levies it where the person lived on 1 January.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import psycopg2.errors
from business_app import (
    RESIDENT_REF,
    SETTINGS,
    Refused,
    app,
    ask_chukan,
    isoformat,
    json_body,
    log,
    needs,
    queue_fuhon,
    record,
    refuse_unknown,
    reply,
    schema_step,
    today,
    transaction,
)
from flask import g

__all__ = ["app", "assessed"]

app.config["SYSTEM"] = "税"
ZEI = json.loads(Path(os.environ.get("ZEI_CONFIG", "/etc/zei/zei.json")).read_text(encoding="utf-8"))
PURPOSE = "zei"  # 地方税の賦課徴収に関する事務, in the アクセス記録
OFFICE = "個人住民税の賦課"  # the 事務 the permission table names for the former municipality's income
INCOME, TAXATION = "前年の所得", "前年の課税情報"  # the 副本 items
QUERY_TIMEOUT = 20.0  # seconds an income query may take: the broker's wait for a provider, through a failover
BODY_CODE = re.compile(r"[0-9]{6}")
FIRST_YEAR = 2000
MAX_INCOME = 10**11  # yen: more is a typing error

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS zei;
-- 課税情報: a person's 所得 of a calendar year (年分), as declared here (申告) or as the former
-- municipality provided it through 番号連携 (前住所地, with the request that brought it).
CREATE TABLE IF NOT EXISTS zei.incomes (
    atena_number char(10) NOT NULL CHECK (atena_number ~ '^[0-9]{10}$'),
    income_year  smallint NOT NULL CHECK (income_year >= 2000),
    income       bigint NOT NULL CHECK (income >= 0),
    source       text NOT NULL CHECK (source IN ('申告', '前住所地')),
    provided_by  char(6),
    request_id   uuid,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    recorded_by  text NOT NULL,
    PRIMARY KEY (atena_number, income_year),
    CHECK ((source = '前住所地') = (provided_by IS NOT NULL AND request_id IS NOT NULL))
);
-- The 年度's 個人住民税 of a person: once per 年度 (a correction would be a new row of its own).
CREATE TABLE IF NOT EXISTS zei.assessments (
    atena_number char(10) NOT NULL CHECK (atena_number ~ '^[0-9]{10}$'),
    fiscal_year  smallint NOT NULL CHECK (fiscal_year > 2000),
    income       bigint NOT NULL,
    per_capita   integer NOT NULL,  -- 均等割
    income_levy  bigint NOT NULL,   -- 所得割
    tax          bigint NOT NULL,
    assessed_at  timestamptz NOT NULL DEFAULT now(),
    assessed_by  text NOT NULL,
    PRIMARY KEY (atena_number, fiscal_year)
);
"""
schema_step("zei schema", SCHEMA)


def assessed(income: int, rates: dict) -> dict:
    """均等割 and 所得割 of a 所得: nothing at or under the exemption; the taxable income rounded
    down to 1,000 yen, the 所得割 to 100 yen."""
    if income <= rates["exemption_income"]:
        return {"per_capita": 0, "income_levy": 0, "tax": 0}
    taxable = max(0, income - rates["basic_deduction"]) // 1000 * 1000
    levy = taxable * rates["income_levy_percent"] // 100 // 100 * 100
    return {"per_capita": rates["per_capita_levy"], "income_levy": levy, "tax": rates["per_capita_levy"] + levy}


def resident(cur, ref: str) -> dict:
    """The current resident a URL names by its ref, with the 宛名番号, or Refused."""
    if not RESIDENT_REF.fullmatch(ref):
        raise Refused(404, "ref", "a resident is named by the ref a registration or lookup gave")
    cur.execute(
        "SELECT r.resident_code, r.event, r.event_date, r.previous_address, r.moved_out_on,"
        " a.atena_number FROM residents r JOIN atena a USING (resident_code) WHERE r.ref = %s",
        (ref,),
    )
    row = cur.fetchone()
    if row is None:
        raise Refused(404, "ref", f"no resident {ref}")
    if row["moved_out_on"] is not None:
        raise Refused(409, "ref", "the person has moved out: 住民税 is assessed where they live now")
    return row


def whole_number(body: dict, field: str, low: int, high: int) -> int:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(400, field, f"{field} must be a whole number from {low} to {high}")
    return value


def income_fuhon(year: int, income: int) -> dict:
    return {"年分": year, "所得": income}


def queue_income_fuhon(cur, atena_number: str, year: int, income: int) -> None:
    """前年の所得 as a 副本 when `year` is the newest income held: the 中間サーバー keeps one value
    per item, and a late 申告 of an earlier year must not take the place of the latest."""
    cur.execute("SELECT max(income_year) AS newest FROM zei.incomes WHERE atena_number = %s", (atena_number,))
    if cur.fetchone()["newest"] == year:
        queue_fuhon(cur, "zei", atena_number, INCOME, income_fuhon(year, income))


@app.post("/api/residents/<ref>/income")
@needs("窓口")
def declare_income(ref: str):
    body = json_body()
    refuse_unknown(body, ("year", "income"))
    year = whole_number(body, "year", FIRST_YEAR, today().year - 1)  # a year that has ended
    income = whole_number(body, "income", 0, MAX_INCOME)
    try:
        with transaction() as cur:
            person = resident(cur, ref)
            cur.execute(
                "INSERT INTO zei.incomes (atena_number, income_year, income, source, recorded_by)"
                " VALUES (%s, %s, %s, '申告', %s)",
                (person["atena_number"], year, income, g.clerk.clerk_id),
            )
            queue_income_fuhon(cur, person["atena_number"], year, income)
            record(cur, "income", person["resident_code"], ["所得"], PURPOSE)
    except psycopg2.errors.UniqueViolation:
        raise Refused(409, "year", f"an income of {year} is held for this resident already") from None
    log.info("declared an income")
    return reply({"income": {"year": year, "income": income, "source": "申告"}}, 201)


def named_body(body: dict) -> str | None:
    """The former municipality the clerk names, if any."""
    named = body.get("former_municipality")
    if named is None:
        return None
    if not isinstance(named, str) or not BODY_CODE.fullmatch(named):
        raise Refused(400, "former_municipality", "former_municipality is a 地方公共団体コード: 6 digits")
    if named == SETTINGS["municipality"]["code"]:
        raise Refused(400, "former_municipality", "the former municipality is another body than this one")
    return named


def former_municipality(named: str | None, person: dict) -> str:
    """The body to ask: the clerk's, or the one the 前住所 begins with."""
    if named is not None:
        return named
    previous = person["previous_address"] or ""
    found = [code for name, code in ZEI["bodies"].items() if previous.startswith(name)]
    if len(found) != 1:
        raise Refused(
            400,
            "former_municipality",
            "the 前住所 names no municipality this one links with: give former_municipality (地方公共団体コード)",
        )
    return found[0]


def ask_former(person: dict, provider: str, year: int) -> tuple[int, str]:
    """The former municipality's 所得 of `year` for the person, through the 中間サーバー: (所得, request id)."""
    payload = {
        "atena_number": person["atena_number"],
        "office": OFFICE,
        "provider": provider,
        "provider_kind": "former-municipality",
        "items": [INCOME],
    }
    status, answer = ask_chukan("/api/query", payload, QUERY_TIMEOUT)
    if status == 0:
        raise Refused(503, None, "the 中間サーバー does not answer; try again later")
    reason = answer.get("error", str(status))
    if status == 409:
        raise Refused(409, "ref", f"not yet asked: {reason} (the registry links new residents within seconds)")
    if status >= 500:
        raise Refused(503, None, f"the former municipality's income could not be asked: {reason}")
    if status != 200:
        raise Refused(403, "former_municipality", f"the former municipality did not provide the income: {reason}")
    provided = answer.get("items", {}).get(INCOME)
    if not isinstance(provided, dict) or provided.get("年分") != year or not isinstance(provided.get("所得"), int):
        raise Refused(
            409,
            "fiscal_year",
            f"the former municipality holds no income of {year} for the person (request {answer.get('request_id')})",
        )
    return provided["所得"], answer["request_id"]


@app.post("/api/residents/<ref>/assessment")
@needs("窓口")
def assess(ref: str):
    body = json_body()
    refuse_unknown(body, ("fiscal_year", "former_municipality"))
    fiscal_year = whole_number(body, "fiscal_year", FIRST_YEAR + 1, today().year)
    named = named_body(body)
    year = fiscal_year - 1
    with transaction() as cur:  # the look at the resident is recorded first: nothing asked from a replica
        person = resident(cur, ref)
        record(cur, "assessment", person["resident_code"], ["所得", "税額"], PURPOSE)
        cur.execute(
            "SELECT income, source, provided_by, request_id::text FROM zei.incomes"
            " WHERE atena_number = %s AND income_year = %s",
            (person["atena_number"], year),
        )
        held = cur.fetchone()
        cur.execute(
            "SELECT 1 FROM zei.assessments WHERE atena_number = %s AND fiscal_year = %s",
            (person["atena_number"], fiscal_year),
        )
        if cur.fetchone():
            raise Refused(409, "fiscal_year", f"the resident's {fiscal_year}年度 tax is assessed already")
    if held is None:
        # The income of the year before the 年度 was declared where the person lived then.
        if person["event"] != "move-in" or person["event_date"].year < fiscal_year:
            raise Refused(409, "fiscal_year", f"no income of {year} is held: declare it first (POST …/income)")
        provider = former_municipality(named, person)
        income, request_id = ask_former(person, provider, year)
        held = {"income": income, "source": "前住所地", "provided_by": provider, "request_id": request_id, "new": True}
    tax = assessed(held["income"], ZEI)
    try:
        with transaction() as cur:
            if held["source"] == "前住所地" and held.get("new"):
                cur.execute(
                    "INSERT INTO zei.incomes (atena_number, income_year, income, source, provided_by, request_id,"
                    " recorded_by) VALUES (%s, %s, %s, '前住所地', %s, %s, %s) ON CONFLICT DO NOTHING",
                    (
                        person["atena_number"],
                        year,
                        held["income"],
                        held["provided_by"],
                        held["request_id"],
                        g.clerk.clerk_id,
                    ),
                )
                if not cur.rowcount:  # a 申告 of that year came in meanwhile: assess on what is held
                    raise Refused(409, "fiscal_year", f"an income of {year} was declared meanwhile; assess again")
                queue_income_fuhon(cur, person["atena_number"], year, held["income"])
            cur.execute(
                "INSERT INTO zei.assessments (atena_number, fiscal_year, income, per_capita, income_levy, tax,"
                " assessed_by) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    person["atena_number"],
                    fiscal_year,
                    held["income"],
                    tax["per_capita"],
                    tax["income_levy"],
                    tax["tax"],
                    g.clerk.clerk_id,
                ),
            )
            queue_fuhon(
                cur,
                "zei",
                person["atena_number"],
                TAXATION,
                {"年度": fiscal_year, "所得": held["income"], "税額": tax["tax"]},
            )
    except psycopg2.errors.UniqueViolation:
        raise Refused(409, "fiscal_year", f"the resident's {fiscal_year}年度 tax is assessed already") from None
    log.info("assessed a resident (income %s)", held["source"])
    return reply(
        {
            "assessment": {"fiscal_year": fiscal_year, "income_year": year, "income": held["income"], **tax},
            "income": {k: held[k] for k in ("source", "provided_by", "request_id")},
        },
        201,
    )


@app.post("/api/residents/<ref>/former-income")
@needs("窓口")
def former_income(ref: str):
    """所得照会: the former municipality's income of a year for the resident, asked and shown, not
    kept (an assessment keeps what it is based on)."""
    body = json_body()
    refuse_unknown(body, ("year", "former_municipality"))
    year = whole_number(body, "year", FIRST_YEAR, today().year - 1)
    named = named_body(body)
    with transaction() as cur:  # recorded first: nothing is asked from a replica
        person = resident(cur, ref)
        record(cur, "former-income", person["resident_code"], ["所得"], PURPOSE)
    provider = former_municipality(named, person)
    income, request_id = ask_former(person, provider, year)
    return reply({"income": {"year": year, "income": income, "provided_by": provider, "request_id": request_id}})


@app.get("/api/residents/<ref>/tax")
@needs("窓口")
def tax(ref: str):
    with transaction() as cur:
        person = resident(cur, ref)
        record(cur, "tax", person["resident_code"], ["所得", "税額"], PURPOSE)
        cur.execute(
            "SELECT income_year, income, source, provided_by, request_id::text, recorded_at, recorded_by"
            " FROM zei.incomes WHERE atena_number = %s ORDER BY income_year",
            (person["atena_number"],),
        )
        incomes = [isoformat(row) for row in cur.fetchall()]
        cur.execute(
            "SELECT fiscal_year, income, per_capita, income_levy, tax, assessed_at, assessed_by"
            " FROM zei.assessments WHERE atena_number = %s ORDER BY fiscal_year",
            (person["atena_number"],),
        )
        assessments = [isoformat(row) for row in cur.fetchall()]
    return reply({"incomes": incomes, "assessments": assessments})
