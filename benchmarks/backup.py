"""Backups at scale: a full backup of a municipality with a million residents, its point-in-time
restore, WAL archive lag under the clerks' load, and what archiving costs the clerks' writes.

    .venv/bin/python benchmarks/backup.py [--stack dev] [--municipality a-city] [--residents 1000000]

On a configured lab (its own: bring it up and configure it first). Generated residents are added
to the municipality's primary (synthetic numbers, never real ones) and replicate as any row does;
they stay. The write-throughput comparison points the primary's archive_command at `true` for one
run (WAL then goes nowhere) and puts it back, then takes a full backup, so that the archive has no
gap a restore would need. Prints the figures and their ratio to the goals of the issue (restore
under 60 s, archiving costing under 5 % of write throughput).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import threading
import time

from common import LGCLOUD, print_table, save
from jumin_writes import measure

from lgcloud.ops.access import ssh_config_path
from lgcloud.ops.drill.runbook import archived

RESTORE_GOAL_S = 60.0
ARCHIVE_COST_GOAL = 0.05

# Residents with synthetic codes in a range the app never hands out (it draws random ones; a
# collision would be refused by the primary key, not overwrite).
GENERATE = """
INSERT INTO residents (resident_code, my_number, name, kana, birth_date, sex, address, event, event_date)
SELECT lpad((90000000000 + i)::text, 11, '0'), lpad((900000000000 + i)::text, 12, '0'),
       '試験 ' || i, 'シケン', date '1950-01-01' + (i % 25000), CASE WHEN i % 2 = 0 THEN '男' ELSE '女' END,
       '本町' || (i % 100) || '-' || (i % 7), 'move-in', date '2026-04-01'
FROM generate_series(1, {n}) AS i
ON CONFLICT DO NOTHING
"""


def ssh(stack: str, vm: str, command: str, timeout: float = 3600) -> str:
    result = subprocess.run(
        ["ssh", "-F", str(ssh_config_path(stack)), vm, command], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise SystemExit(f"{vm}: `{command[:80]}` failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip()


def sql(stack: str, vm: str, query: str, database: str = "jumin") -> str:
    return ssh(
        stack, vm, f"cd / && chpst -u postgres psql -XAtq -v ON_ERROR_STOP=1 -d {database} -c {shlex.quote(query)}"
    )


def lgcloud(stack: str, *args: str) -> dict:
    result = subprocess.run([LGCLOUD, *args, "--stack", stack, "--json"], capture_output=True, text=True, timeout=7200)
    if result.returncode != 0:
        raise SystemExit(f"lgcloud {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def archive_lag(stack: str, db: str, segments: int) -> list[float]:
    """Seconds from a WAL segment's completion (a switch) until the archiver reports it archived."""
    lags = []
    for _ in range(segments):
        done = sql(stack, db, "SELECT pg_walfile_name(pg_switch_wal())", "postgres")
        started = time.monotonic()
        while sql(stack, db, archived(done), "postgres") != "t":
            if time.monotonic() - started > 120:
                raise SystemExit(f"{done} not archived within 120 s")
            time.sleep(0.05)
        lags.append(time.monotonic() - started)
    return lags


def set_archive_command(stack: str, db: str, command: str) -> None:
    sql(stack, db, f"ALTER SYSTEM SET archive_command = {command!r}", "postgres")
    sql(stack, db, "SELECT pg_reload_conf()", "postgres")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--municipality", default="a-city")
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="writes per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per setting, alternating")
    args = parser.parse_args(argv)
    stack, m = args.stack, args.municipality
    db = f"{m}-db"

    have = int(sql(stack, db, "SELECT count(*) FROM residents"))
    if have < args.residents:
        started = time.monotonic()
        sql(stack, db, GENERATE.format(n=args.residents - have))
        print(f"generated {args.residents - have} residents in {time.monotonic() - started:.0f} s", file=sys.stderr)
    residents = int(sql(stack, db, "SELECT count(*) FROM residents"))
    database_mb = int(sql(stack, db, "SELECT pg_database_size('jumin')")) / 2**20

    started = time.monotonic()
    [stanza] = lgcloud(stack, "backup", "run", "--municipality", m)
    backup_wall = time.monotonic() - started
    newest = stanza["backups"][-1]
    backup_mb = newest["size_bytes"] / 2**20

    started = time.monotonic()
    restored = lgcloud(stack, "restore", "--municipality", m, "--latest")
    restore_wall = time.monotonic() - started
    subprocess.run([LGCLOUD, "restore", "--municipality", m, "--discard", "--stack", stack], check=True, timeout=600)

    # Archive lag while a clerk writes: the load on the terminal, the switches from here.
    load = threading.Thread(target=measure, args=(stack, m, args.requests, 2))
    load.start()
    lags = archive_lag(stack, db, 10)
    load.join(timeout=900)

    pgbackrest = sql(stack, db, "SHOW archive_command", "postgres")
    throughput: dict[str, list[float]] = {"archiving": [], "not archiving": []}
    try:
        for _ in range(args.rounds):
            for setting, command in (("archiving", pgbackrest), ("not archiving", "true")):
                set_archive_command(stack, db, command)
                throughput[setting].append(measure(stack, m, args.requests, 4)["requests_per_s"])
    finally:
        sql(stack, db, "ALTER SYSTEM RESET archive_command", "postgres")
        sql(stack, db, "SELECT pg_reload_conf()", "postgres")
    lgcloud(stack, "backup", "run", "--municipality", m)  # no gap left in what a restore can reach

    on, off = statistics.median(throughput["archiving"]), statistics.median(throughput["not archiving"])
    cost = (off - on) / off
    figures = {
        "residents": residents,
        "database_mb": database_mb,
        "backup": {
            "seconds": newest["seconds"],
            "wall_seconds": backup_wall,
            "mb": backup_mb,
            "stored_mb": newest["stored_bytes"] / 2**20,
        },
        "restore": {
            "recovery_seconds": restored["recovery_seconds"],
            "wall_seconds": restore_wall,
            "steps": restored["steps"],
        },
        "archive_lag_seconds": lags,
        "writes_per_s": throughput,
        "archiving_cost": cost,
    }
    print_table(
        f"backups of {m}: {residents} residents, database {database_mb:.0f} MiB",
        [
            (
                "full backup",
                f"{newest['seconds']:.0f} s ({backup_wall:.0f} s with the CLI), "
                f"{backup_mb / max(newest['seconds'], 1):.1f} MiB/s, stored {newest['stored_bytes'] / 2**20:.0f} MiB",
            ),
            (
                "PITR restore (restore + recovery)",
                f"{restored['recovery_seconds']:.1f} s; goal < {RESTORE_GOAL_S:.0f} s: "
                f"{restored['recovery_seconds'] / RESTORE_GOAL_S:.2f}x of it",
            ),
            ("restore end to end (VM, configure, restore)", f"{restore_wall:.0f} s  {restored['steps']}"),
            ("WAL archive lag under load", f"median {statistics.median(lags):.2f} s, max {max(lags):.2f} s"),
            (
                "writes/s archiving vs not",
                f"{on:.1f} vs {off:.1f} (median of {args.rounds}); "
                f"cost {100 * cost:.1f} % (goal < {100 * ARCHIVE_COST_GOAL:.0f} %)",
            ),
        ],
    )
    print(f"results: {save('backup', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
