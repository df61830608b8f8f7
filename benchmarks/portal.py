"""マイ・ポータル: sign-ins per second, the やりとり履歴 page of a person with 1,000 records, and how
long a revoked card still signs in.

    .venv/bin/python benchmarks/portal.py [--stack dev] [--records 1000] [--requests 200] [--clients 4]

From the host, as a citizen's browser on the internet segment would ask. A person moves from Ａ市 to
Ｂ町 (as `lgcloud linkage move-in` does) and Ｂ町 issues their card; Ｂ町's app VM then asks Ａ市
for their income through the 中間サーバー and the broker until the broker holds `records` 情報提供等記録
about them (every one a real brokered query, recorded on both sides and kept).

- Sign-ins: `requests` GETs of the お知らせ page, `clients` at a time, each on a new TLS connection
  presenting the card (the handshake, the CRL check, the broker's read API and the page). The peer:
  the same requests on one kept-alive connection per client (no handshake).
- The page: `requests` GETs of やりとり履歴 for the person with `records` records, against the same
  page of a person with one (kept-alive both: the page, not the handshake).
- Revocation: `lgcloud card revoke` timed from its start to the first sign-in refused, three times.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import ssl
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import LGCLOUD, latency_figures, latency_text, print_table, save

from lgcloud.model.config import load_stack
from lgcloud.ops.cards import issue
from lgcloud.ops.lab import Lab
from lgcloud.ops.move_in import move_person
from lgcloud.state.cards import CardReader, card_authority, read_card
from linkage import FORMER, INCOME, LOAD, TAX

PIN = "2468"


def context(stack: str, card: CardReader) -> ssl.SSLContext:
    found = ssl.create_default_context(cafile=str(card_authority(stack)))
    found.load_cert_chain(str(card.certificate), str(card.key))
    return found


def timed_gets(address: str, path: str, tls: ssl.SSLContext, total: int, clients: int, keep_alive: bool) -> dict:
    """`total` GETs of `path`, `clients` at a time; a new connection for each unless `keep_alive`."""
    local = threading.local()

    def ask(_: int) -> float:
        started = time.perf_counter()
        connection = getattr(local, "connection", None) if keep_alive else None
        if connection is None:
            connection = http.client.HTTPSConnection(address, 443, context=tls, timeout=30)
            local.connection = connection
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        if not keep_alive:
            connection.close()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(ask, range(total)))
    return latency_figures(total, {"seconds": time.perf_counter() - started, "latencies": latencies})


def person_with_card(lab: Lab, directory: Path, name: str) -> tuple[dict, CardReader]:
    """A person moved from Ａ市 to Ｂ町, with Ｂ町's card: their registration there and the card."""
    moved = move_person(lab, lab.pair("a-city"), lab.pair("b-town"), 3_000_000)
    issue(lab, "b-town", moved.after["ref"], PIN, directory / f"{name}.p12")
    return moved.after, read_card(lab.stack, directory / f"{name}.p12", PIN)


def add_records(lab: Lab, atena_number: str, count: int, clients: int) -> None:
    """`count` brokered queries about the person from Ｂ町's app VM: one 情報提供等記録 each."""
    url = f"http://{lab.topology.vm('chukan').addresses['b-town-center']}:8600/api/query"
    body = {"atena_number": atena_number, "office": TAX, "provider": "012025", "provider_kind": FORMER}
    body["items"] = [INCOME]
    lab.run(
        "b-town-app",
        f"python3 - {url} {shlex.quote(json.dumps(body, ensure_ascii=False))} {count} {clients}",
        stdin=LOAD,
        timeout=1800,
    )


def refused_after_revoke(stack: str, address: str, lab: Lab, ref: str, directory: Path, run: int) -> dict:
    """Seconds from `lgcloud card revoke` starting to the first refused sign-in, and the verb's own."""
    card_file = directory / f"revoke-{run}.p12"
    issue(lab, "b-town", ref, PIN, card_file)
    tls = context(stack, read_card(stack, card_file, PIN))
    assert sign_in(address, tls) == 200
    started = time.monotonic()
    revoke = subprocess.Popen(
        [LGCLOUD, "card", "revoke", "--stack", stack, "--municipality", "b-town", "--resident", ref],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    refused_at = None
    while refused_at is None and time.monotonic() - started < 60:
        if sign_in(address, tls) == 401:
            refused_at = time.monotonic() - started
        else:
            time.sleep(0.05)
    revoke.wait()
    assert revoke.returncode == 0, revoke.stderr.read() if revoke.stderr else ""
    assert refused_at is not None, "a revoked card still signs in after 60 s"
    return {"refused_after_s": refused_at, "verb_s": time.monotonic() - started}


def sign_in(address: str, tls: ssl.SSLContext) -> int:
    connection = http.client.HTTPSConnection(address, 443, context=tls, timeout=30)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with Lab(load_stack(args.stack)) as lab, tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        address = lab.topology.vm("portal").addresses["internet"]
        many, many_card = person_with_card(lab, directory, "many")
        one, one_card = person_with_card(lab, directory, "one")
        started = time.monotonic()
        add_records(lab, many["atena_number"], args.records - 1, args.clients)  # the move's query is the first
        filled = time.monotonic() - started
        tls_many, tls_one = context(args.stack, many_card), context(args.stack, one_card)
        signing_in = timed_gets(address, "/", tls_many, args.requests, args.clients, keep_alive=False)
        kept_alive = timed_gets(address, "/", tls_many, args.requests, args.clients, keep_alive=True)
        history = timed_gets(address, "/history", tls_many, args.requests, args.clients, keep_alive=True)
        history_one = timed_gets(address, "/history", tls_one, args.requests, args.clients, keep_alive=True)
        revocations = [refused_after_revoke(args.stack, address, lab, one["ref"], directory, n) for n in range(3)]
    refused = sorted(r["refused_after_s"] for r in revocations)
    print_table(
        f"マイ・ポータル on {args.stack} ({args.requests} requests, {args.clients} at a time)",
        [
            (f"{args.records:,} records made by brokered queries", f"{filled:.0f} s"),
            ("sign-ins (a new TLS connection with the card each)", latency_text(signing_in)),
            ("the same on kept-alive connections (peer)", latency_text(kept_alive)),
            (
                "ratio (sign-in / kept-alive)",
                f"{kept_alive['requests_per_s'] / signing_in['requests_per_s']:.2f}× the time per request",
            ),
            (f"やりとり履歴 with {args.records:,} records", latency_text(history)),
            ("やりとり履歴 with 1 record (peer)", latency_text(history_one)),
            ("ratio (p95)", f"{history['p95_ms'] / history_one['p95_ms']:.2f}×"),
            (
                "revoked card refused after (min / median / max)",
                f"{refused[0]:.2f} / {refused[1]:.2f} / {refused[2]:.2f} s from `lgcloud card revoke` starting",
            ),
        ],
    )
    result = {
        "records": args.records,
        "fill_seconds": filled,
        "sign_ins": signing_in,
        "kept_alive": kept_alive,
        "history": history,
        "history_one_record": history_one,
        "revocations": revocations,
    }
    print(f"saved {save('portal', {'stack': args.stack, **result})}")


if __name__ == "__main__":
    main()
