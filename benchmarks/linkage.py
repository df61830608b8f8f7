"""番号連携: brokered queries end to end, against the provider's half alone; the chain walk of
`lgcloud linkage verify-records` over a million records.

    .venv/bin/python benchmarks/linkage.py [--stack dev] [--queries 300] [--clients 4] [--records 1000000]

Queries from the office: a clerk of Ｂ町 asks 税, through the gateway, for the income of a person
who moved from Ａ市 (税 → Ｂ町's tenant → broker → Ａ市's tenant and back), `clients` at a time.

Queries from the app VM: Ｂ町's app VM asks, through its 中間サーバー and the broker, for 前年の所得 of a person
whose 副本 Ａ市 registered (Ｂ町's tenant → broker → Ａ市's tenant and back, every hop signed and
recorded), `clients` at a time; requests/s, p50 and p95. The peer: the provider's half alone —
the broker VM sending the same signed /provide calls straight to Ａ市's tenant — so the ratio is
what the requester's side and the broker add. The person is a benchmark person (宛名番号 99…)
linked at both bodies through the broker as any resident is; its rows stay, as every committed row
does.

Chain walk: a scratch database beside Ａ市's tenant on its primary, filled with `records` chained
records of the tenant's shape, walked with the code `verify-records` runs (streamed over SSH to the
controller), then dropped. Goal: under 10 s for a million.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import time

from common import latency_figures, latency_text, load_script, print_table, save

from lgcloud.model.config import load_stack
from lgcloud.model.naming import service_url
from lgcloud.ops.lab import Lab
from lgcloud.ops.linkage import linkage_core, tenant_chain
from lgcloud.ops.move_in import move_person

TAX, FORMER, INCOME = "個人住民税の賦課", "former-municipality", "前年の所得"
SCRATCH = "chukan_walk_bench"

# Runs on an app VM: `total` POSTs of `body` to `url`, `clients` at a time; the latencies.
LOAD = load_script(r"""
import sys, urllib.request
url, body, total, clients = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
headers = {"Content-Type": "application/json"}
timed_requests(lambda _: urllib.request.Request(url, body, headers), total, clients)
""")

# Runs on an office terminal: `total` 所得照会 to 税 through the gateway, with the office's
# certificate and a clerk's session (the token on stdin's first line), `clients` at a time.
OFFICE = load_script(r"""
import json, ssl, sys, urllib.request
url, total, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
token = sys.stdin.readline().strip()
office = ssl.create_default_context(cafile="/etc/lgcloud/lgwan-ca.crt")
office.load_cert_chain("/etc/lgcloud/office.crt", "/etc/lgcloud/office.key")
headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
body = json.dumps({"year": int(sys.argv[4])}).encode()
timed_requests(lambda _: urllib.request.Request(url, body, headers), total, clients, context=office)
""")

# Runs on the broker VM: the same query's provider half, signed as the broker signs it.
PROVIDE = load_script(r"""
import json, secrets, sys, urllib.request, uuid
sys.path.insert(0, "/opt/linkage")
from linkage_core import sign
settings = json.load(open("/etc/broker/broker.json"))
provider, fugo, total, clients = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = settings["bodies"][provider]
key, url = bytes.fromhex(body["key"]), body["chukan"][0] + "/provide"
def signed(_):
    raw = json.dumps({"request_id": str(uuid.uuid4()), "fugo": fugo, "office": sys.argv[5], "requester": sys.argv[6],
                      "provider_kind": "former-municipality", "items": [sys.argv[7]]}, ensure_ascii=False).encode()
    headers = {**sign(key, provider, "/provide", raw, secrets.token_urlsafe(18)).headers(),
               "Content-Type": "application/json"}
    return urllib.request.Request(url, raw, headers)
timed_requests(signed, total, clients)
""")

# Runs on the database VM as postgres: `n` chained records of the tenant's shape into SCRATCH.
FILL = r"""
import hashlib, json, subprocess, sys
n = int(sys.argv[1])
previous, lines = "0" * 64, []
copy = subprocess.Popen(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", sys.argv[2], "-c",
                         "COPY chukan.records (position, record, hash) FROM STDIN"], stdin=subprocess.PIPE, text=True)
for position in range(n):
    text = json.dumps({"position": position, "at": f"2026-12-01T10:00:00.{position % 1000:03d}+00:00",
                       "request_id": f"00000000-0000-4000-8000-{position:012d}", "side": "provider",
                       "requester": "013315", "provider": "012025", "office": "個人住民税の賦課",
                       "items": ["前年の所得"], "outcome": "provided", "atena_number": f"{position % 10**10:010d}"},
                      ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    previous = hashlib.sha256(previous.encode() + b"\n" + text.encode()).hexdigest()
    copy.stdin.write(f"{position}\t{text.replace(chr(92), chr(92) * 2)}\t{previous}\n")
copy.stdin.close()
sys.exit(copy.wait())
"""


def chukan_call(lab: Lab, vm: str, address: str, path: str, body: dict) -> dict:
    out = lab.run(
        vm,
        f"curl -sS --max-time 20 -H 'Content-Type: application/json' --data-binary @- http://{address}:8600{path}",
        stdin=json.dumps(body, ensure_ascii=False),
    )
    answer: dict = json.loads(out)
    return answer


def benchmark_person(lab: Lab) -> tuple[str, str]:
    """A person linked at Ａ市 and Ｂ町 with Ａ市's 副本 of last year's income: its 宛名番号 at both
    (the same here) and Ａ市's 符号, read as the superuser on Ａ市's primary."""
    atena_number = f"99{secrets.randbelow(10**8):08d}"
    resident_code = f"{secrets.randbelow(10**11):011d}"
    topology = lab.topology
    # A former resident of Ａ市 (who provides only of those), living at Ｂ町 now.
    for m, status in (("a-city", "former"), ("b-town", "current")):
        address = topology.vm("chukan").addresses[f"{m}-center"]
        link = {"atena_number": atena_number, "resident_code": resident_code, "status": status}
        linked = chukan_call(lab, f"{m}-app", address, "/api/link", link)
        assert linked.get("linked"), linked
    a_city = topology.vm("chukan").addresses["a-city-center"]
    fuhon = {"atena_number": atena_number, "item": INCOME, "system": "zei", "value": {"年分": 2025, "所得": 3_600_000}}
    assert chukan_call(lab, "a-city-app", a_city, "/api/fuhon", fuhon).get("registered")
    fugo = lab.sql(
        "a-city-db", f"SELECT fugo FROM chukan.linked WHERE atena_number = '{atena_number}'", database="chukan"
    )
    return atena_number, fugo


def queries(lab: Lab, total: int, clients: int) -> dict:
    atena_number, fugo = benchmark_person(lab)
    body = {
        "atena_number": atena_number,
        "office": TAX,
        "provider": "012025",
        "provider_kind": FORMER,
        "items": [INCOME],
    }
    url = f"http://{lab.topology.vm('chukan').addresses['b-town-center']}:8600/api/query"
    end_to_end = json.loads(
        lab.run(
            "b-town-app",
            f"python3 - {url} {shlex.quote(json.dumps(body, ensure_ascii=False))} {total} {clients}",
            stdin=LOAD,
            timeout=900,
        )
    )
    provider = json.loads(
        lab.run(
            "broker",
            f"python3 - 012025 {fugo} {total} {clients} {shlex.quote(TAX)} 013315 {shlex.quote(INCOME)}",
            stdin=PROVIDE,
            timeout=900,
        )
    )
    # From 税 at Ｂ町's office: a person who moved from Ａ市, asked about as a clerk asks.
    moved = move_person(lab, lab.pair("a-city"), lab.pair("b-town"), 3_600_000)
    url = service_url("zei", "b-town") + f"/api/residents/{moved.after['ref']}/former-income"
    from_office = json.loads(
        lab.run(
            "b-town-terminal",
            f"python3 -c {shlex.quote(OFFICE)} {url} {total} {clients} {moved.income_year}",
            stdin=moved.clerks[1].token + "\n",
            timeout=900,
        )
    )
    return {
        "from_office": latency_figures(total, from_office),
        "end_to_end": latency_figures(total, end_to_end),
        "provider_only": latency_figures(total, provider),
    }


def chain_walk(lab: Lab, records: int) -> dict:
    db = "a-city-db"
    lab.run(db, f"chpst -u postgres createdb {SCRATCH}")
    try:
        table = (
            "CREATE TABLE chukan.records (position bigint PRIMARY KEY, record text NOT NULL, hash char(64) NOT NULL)"
        )
        lab.sql(db, f"CREATE SCHEMA chukan; {table}", database=SCRATCH)
        started = time.monotonic()
        lab.run(db, f"cd /tmp && chpst -u postgres python3 - {records} {SCRATCH}", stdin=FILL, timeout=1800)
        filled = time.monotonic() - started
        linkage_core()  # imported before the clock starts, as the CLI has by the time it walks
        started = time.monotonic()
        check = tenant_chain(lab, db, SCRATCH)
        walked = time.monotonic() - started
    finally:
        lab.run(db, f"chpst -u postgres dropdb --if-exists {SCRATCH}", check=False)
    assert check.records == records and check.first_broken is None, check
    return {"records": records, "walk_seconds": walked, "fill_seconds": filled, "goal_seconds": 10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--walk-only", action="store_true", help="the chain walk alone")
    parser.add_argument("--queries-only", action="store_true", help="the queries alone (no chain walk)")
    args = parser.parse_args()
    with Lab(load_stack(args.stack)) as lab:
        walk = chain_walk(lab, args.records) if not args.queries_only else None
        if args.walk_only and walk is not None:
            print(f"verify-records over {walk['records']:,} records: {walk['walk_seconds']:.1f} s")
            return
        brokered = queries(lab, args.queries, args.clients)
    e2e, alone, office = brokered["end_to_end"], brokered["provider_only"], brokered["from_office"]
    print_table(
        f"番号連携 on {args.stack} ({args.queries} queries, {args.clients} at a time)",
        [
            *(
                [(f"verify-records over {walk['records']:,} records", f"{walk['walk_seconds']:.1f} s (goal < 10 s)")]
                if walk
                else []
            ),
            ("所得照会 from Ｂ町's office: 税 → 中間サーバー → broker → Ａ市's 副本", latency_text(office)),
            ("brokered query, Ｂ町 → broker → Ａ市", latency_text(e2e)),
            ("provider's half alone (peer)", latency_text(alone)),
            (
                "ratio (end to end / provider alone)",
                f"{alone['requests_per_s'] / e2e['requests_per_s']:.2f}× the time per query, "
                f"p95 {e2e['p95_ms'] / alone['p95_ms']:.2f}×",
            ),
        ],
    )
    print(f"saved {save('linkage', {'stack': args.stack, 'queries': brokered, 'chain_walk': walk})}")


if __name__ == "__main__":
    main()
