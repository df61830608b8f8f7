#!/usr/bin/env python3
"""Take each stanza's full backup when its newest is older than the interval, forever; after each
look, publish what the repository holds for the node exporter's textfile collector.

Due-ness is read from the repository itself (`pgbackrest info`), so a restart, a replaced VM or
a backup taken by hand (`lgcloud backup run`) moves the schedule instead of resetting it. One
stanza at a time: the repository VM has a fraction of a CPU. Runs as root (the metrics directory
is root's); pgBackRest runs as postgres, the repository's owner."""

import argparse
import json
import os
import subprocess
import sys
import time

AS_OWNER = ["runuser", "-u", "postgres", "--", "pgbackrest"]


def newest(stanza: str) -> tuple[float, int] | None:
    """When the stanza's newest backup finished (0: none yet) and how many it holds; None while the
    stanza does not exist (configure creates it) or the repository does not answer."""
    done = subprocess.run(
        [*AS_OWNER, f"--stanza={stanza}", "--output=json", "info"], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        return None
    entries = json.loads(done.stdout or "[]")
    if not entries or entries[0]["status"]["code"] == 1:  # 1: missing stanza path
        return None
    stops = [b["timestamp"]["stop"] for e in entries for b in e.get("backup", [])]
    return float(max(stops, default=0)), len(stops)


def publish(directory: str, interval: int, held: dict[str, tuple[float, int]]) -> None:
    """Write the metrics whole (a temporary file renamed): the exporter never reads half a file."""
    lines = [
        "# HELP lgcloud_backup_interval_seconds Seconds between two full backups of a municipality (lgcloud:backup).",
        "# TYPE lgcloud_backup_interval_seconds gauge",
        f"lgcloud_backup_interval_seconds {interval}",
        "# HELP lgcloud_backup_newest_timestamp_seconds When the newest backup of the stanza finished (0: none).",
        "# TYPE lgcloud_backup_newest_timestamp_seconds gauge",
        *(f'lgcloud_backup_newest_timestamp_seconds{{stanza="{s}"}} {t:.0f}' for s, (t, _) in held.items()),
        "# HELP lgcloud_backup_generations Backups of the stanza in the repository.",
        "# TYPE lgcloud_backup_generations gauge",
        *(f'lgcloud_backup_generations{{stanza="{s}"}} {n}' for s, (_, n) in held.items()),
    ]
    path = os.path.join(directory, "lgcloud_backup.prom")
    with open(path + ".tmp", "w", encoding="ascii") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=int, required=True)
    parser.add_argument("--poll", type=int, default=60)
    parser.add_argument("--metrics", required=True, help="the node exporter's textfile directory")
    parser.add_argument("stanzas", nargs="+")
    args = parser.parse_args()
    while True:
        held = {}
        for stanza in args.stanzas:
            found = newest(stanza)
            held[stanza] = found or (0.0, 0)  # published as never backed up: BackupTooOld sees it
            if found is None:
                continue
            age = time.time() - found[0]
            if age < args.interval:
                continue
            print(f"backup-schedule: {stanza}: newest backup {age:.0f} s old, taking a full backup", flush=True)
            done = subprocess.run([*AS_OWNER, f"--stanza={stanza}", "--type=full", "backup"], timeout=6 * 3600)
            print(f"backup-schedule: {stanza}: pgbackrest exited {done.returncode}", flush=True)
            held[stanza] = newest(stanza) or found
        publish(args.metrics, args.interval, held)
        time.sleep(args.poll)


if __name__ == "__main__":
    sys.exit(main())
