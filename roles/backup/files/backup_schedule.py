#!/usr/bin/env python3
"""Take each stanza's full backup when its newest is older than the interval, forever.

Due-ness is read from the repository itself (`pgbackrest info`), so a restart, a replaced VM or
a backup taken by hand (`lgcloud backup run`) moves the schedule instead of resetting it. One
stanza at a time: the repository VM has a fraction of a CPU."""

import argparse
import json
import subprocess
import sys
import time


def newest(stanza: str) -> float:
    done = subprocess.run(
        ["pgbackrest", f"--stanza={stanza}", "--output=json", "info"], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        return 0.0
    entries = json.loads(done.stdout or "[]")
    stops = [b["timestamp"]["stop"] for e in entries for b in e.get("backup", [])]
    return float(max(stops, default=0))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=int, required=True)
    parser.add_argument("--poll", type=int, default=60)
    parser.add_argument("stanzas", nargs="+")
    args = parser.parse_args()
    while True:
        for stanza in args.stanzas:
            age = time.time() - newest(stanza)
            if age < args.interval:
                continue
            print(f"backup-schedule: {stanza}: newest backup {age:.0f} s old, taking a full backup", flush=True)
            done = subprocess.run(["pgbackrest", f"--stanza={stanza}", "--type=full", "backup"], timeout=6 * 3600)
            print(f"backup-schedule: {stanza}: pgbackrest exited {done.returncode}", flush=True)
        time.sleep(args.poll)


if __name__ == "__main__":
    sys.exit(main())
