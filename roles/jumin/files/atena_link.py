"""団体内統合宛名's link to 番号連携: every 宛名番号 without a 符号 gets one, through the 中間サーバー.

Runs beside the 住民記録 app on the municipality's app VMs (runit service ``atena-link``) with the
app's settings (``JUMIN_CONFIG``) and database account. Only where the database is the primary: the
standby app's loop idles until its replica is promoted. It sends the 宛名番号 and the 住民票コード
to the 中間サーバー of its site, which asks the broker and keeps the 符号 beside the 宛名番号; here
the row is marked linked. Then it sends the 副本 the municipality's systems queued
(``fuhon_outbox``, in order). It logs counts and statuses, never a number of a person.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import psycopg2.errors

SETTINGS = json.loads(Path(os.environ.get("JUMIN_CONFIG", "/etc/jumin/jumin.json")).read_text(encoding="utf-8"))
INTERVAL = float(SETTINGS.get("link_interval_seconds", 2))
BATCH = 50
# SQL: whether the person of atena row `a` lives here now, or did once (a former resident).
RESIDENCE = (
    "CASE WHEN EXISTS (SELECT 1 FROM residents r WHERE r.resident_code = a.resident_code"
    " AND r.moved_out_on IS NULL) THEN 'current' ELSE 'former' END"
)

logging.basicConfig(level=logging.INFO, format="atena-link: %(message)s")
log = logging.getLogger("atena-link")


def unlinked(conn, after: str) -> list[tuple[str, str, str]]:
    """(宛名番号, 住民票コード, current|former) of persons the 中間サーバー has to be told of, after
    `after`, in order; none on a replica."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_is_in_recovery()")
        if cur.fetchone()[0]:
            return []
        cur.execute(
            f"SELECT atena_number, resident_code, {RESIDENCE} FROM atena a"
            " WHERE linked_at IS NULL AND atena_number > %s ORDER BY atena_number LIMIT %s",
            (after, BATCH),
        )
        return cur.fetchall()


def post(path: str, payload: dict) -> int:
    """The 中間サーバー's HTTP status for `payload` at `path`; 0 when it does not answer."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    call = urllib.request.Request(
        f"{SETTINGS['chukan']}{path}", body, {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(call, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def send_fuhon(conn) -> None:
    """The 副本 the systems queued, in order, until the 中間サーバー does not take one; one it
    refuses as malformed (400) is kept with its answer and not sent again."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_is_in_recovery()")
        if cur.fetchone()[0]:
            return  # the primary's atena-link sends them
        cur.execute(
            "SELECT id, atena_number, item, value, system FROM fuhon_outbox"
            " WHERE answered_at IS NULL ORDER BY id LIMIT %s",
            (BATCH,),
        )
        waiting = cur.fetchall()
    sent = refused = 0
    for row_id, atena_number, item, value, system in waiting:
        status = post("/api/fuhon", {"atena_number": atena_number, "item": item, "value": value, "system": system})
        if status not in (201, 400):
            break  # away, or not taking it now (a 403 of a tenant not yet known): the next round, in order
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE fuhon_outbox SET answered_at = now(), answer = %s WHERE id = %s", (status, row_id))
        sent, refused = sent + (status == 201), refused + (status != 201)
    if sent or refused:
        log.info("registered %d 副本 with the 中間サーバー (%d refused)", sent, refused)


# One session kept from round to round: a new one every round on each of 60 app VMs (a backend
# forked, a SCRAM exchange) was a tenth of a core at 30 municipalities. A database that is gone
# fails it within tcp_user_timeout, and the next round connects again; after a promotion the same
# session sees the database a primary.
DSN = SETTINGS["dsn"] + " keepalives=1 keepalives_idle=5 tcp_user_timeout=10000"


def main() -> None:
    quiet_since, after = 0.0, ""
    conn = None
    while True:
        try:
            if conn is None or conn.closed:
                conn = psycopg2.connect(DSN)
            pending = unlinked(conn, after)
            # A round goes on from where the last one stopped, so that a row the 中間サーバー
            # refuses (4xx) is passed over, not asked again before every other.
            after = pending[-1][0] if len(pending) == BATCH else ""
            done = refused = 0
            for atena_number, resident_code, residence in pending:
                status = post(
                    "/api/link", {"atena_number": atena_number, "resident_code": resident_code, "status": residence}
                )
                if 400 <= status < 500:
                    refused += 1
                    continue
                if status != 200:  # the 中間サーバー or the broker is away: the next round
                    if time.monotonic() - quiet_since > 60:  # one line a minute meanwhile
                        log.warning("the 中間サーバー did not link (status %s); %d waiting", status, len(pending))
                        quiet_since = time.monotonic()
                    after = ""
                    break
                with conn, conn.cursor() as cur:
                    # Only if what was told is still true: a move meanwhile is told next round.
                    cur.execute(
                        f"UPDATE atena a SET linked_at = now() WHERE atena_number = %s AND {RESIDENCE} = %s",
                        (atena_number, residence),
                    )
                done += 1
            if done:
                log.info("linked %d 宛名番号 to their 符号", done)
            if refused and time.monotonic() - quiet_since > 60:
                log.warning("the 中間サーバー refused to link %d 宛名番号 (a 4xx); passed over", refused)
                quiet_since = time.monotonic()
            send_fuhon(conn)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            if conn is not None:
                conn.close()
            conn = None  # the database is away: the next round connects again
        except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn):
            pass  # the app has not made its tables yet (the transaction was rolled back): the next round
        time.sleep(INTERVAL)


if __name__ == "__main__":
    main()
