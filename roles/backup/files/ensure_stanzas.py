#!/usr/bin/env python3
"""Create each named stanza (idempotent), check its archive, take a first full backup where none
exists (or wait for the one the scheduler began). Prints one JSON line: {"changes": [...]}. Runs
pgBackRest as postgres."""

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def pgbackrest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest", *args], capture_output=True, text=True)


LOCK_HELD = 50  # pgBackRest's exit code when another process holds the stanza's backup lock
WAIT_SECONDS = 1500
AT_ONCE = 6  # stanzas made ready at the same time


class Failed(Exception):
    """A stanza that could not be made ready, and what pgBackRest said."""


def must(*args: str) -> str:
    done = pgbackrest(*args)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()[-600:]
        raise Failed(f"pgbackrest {' '.join(args)} exited {done.returncode}: {said}")
    return done.stdout


def wait_for_backup(stanza: str) -> None:
    """Until the backup another process is taking of `stanza` is in the repository."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(2)
        if json.loads(must(f"--stanza={stanza}", "--output=json", "info"))[0].get("backup"):
            return
    raise Failed(f"{stanza} has no backup {WAIT_SECONDS} s after another process began one")


def ensure(stanza: str) -> list[str]:
    """The stanza created, its archive checked, its first full backup taken: what changed."""
    changes = []
    info = json.loads(must(f"--stanza={stanza}", "--output=json", "info"))
    status = info[0]["status"]["code"] if info else 1
    if status == 1:  # missing stanza path
        must(f"--stanza={stanza}", "stanza-create")
        changes.append(f"{stanza}: stanza created")
    must(f"--stanza={stanza}", "check")
    info = json.loads(must(f"--stanza={stanza}", "--output=json", "info"))
    if not info[0].get("backup"):
        done = pgbackrest(f"--stanza={stanza}", "--type=full", "backup")
        if done.returncode == LOCK_HELD:  # the scheduler found it due first: its backup is the first
            wait_for_backup(stanza)
        elif done.returncode != 0:
            raise Failed(
                f"the first backup of {stanza} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-600:]}"
            )
        changes.append(f"{stanza}: first full backup")
    return changes


def main() -> int:
    # Each stanza on its own: a check mostly waits for the database to archive a segment, so a few
    # at a time (30 municipalities one after another took over ten minutes).
    with ThreadPoolExecutor(AT_ONCE) as pool:
        futures = {stanza: pool.submit(ensure, stanza) for stanza in sys.argv[1:]}
    changes, failures = [], []
    for future in futures.values():
        try:
            changes += future.result()
        except Failed as failed:
            failures.append(str(failed))
    if failures:
        sys.exit("\n".join(failures))
    print(json.dumps({"changes": changes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
