#!/usr/bin/env python3
"""Create each named stanza (idempotent), check its archive, take a first full backup where none
exists. Prints one JSON line: {"changes": [...]}. Runs pgBackRest as postgres."""

import json
import subprocess
import sys


def pgbackrest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest", *args], capture_output=True, text=True)


def must(*args: str) -> str:
    done = pgbackrest(*args)
    if done.returncode != 0:
        sys.exit(f"pgbackrest {' '.join(args)} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-600:]}")
    return done.stdout


def main() -> int:
    changes = []
    for stanza in sys.argv[1:]:
        info = json.loads(must(f"--stanza={stanza}", "--output=json", "info"))
        status = info[0]["status"]["code"] if info else 1
        if status == 1:  # missing stanza path
            must(f"--stanza={stanza}", "stanza-create")
            changes.append(f"{stanza}: stanza created")
        must(f"--stanza={stanza}", "check")
        info = json.loads(must(f"--stanza={stanza}", "--output=json", "info"))
        if not info[0].get("backup"):
            must(f"--stanza={stanza}", "--type=full", "backup")
            changes.append(f"{stanza}: first full backup")
    print(json.dumps({"changes": changes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
