"""Backups a user can count on: every municipality backed up at the first configure with its WAL
archived; a restore to a moment shows that moment's rows on a VM beside the live one; a damaged
backup is found and named; a municipality's databases, even as root, reach no other's backups."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time

import pytest
import yaml

from lgcloud.model.config import stack_file
from lgcloud.ops.drill.runbook import archived

from .conftest import STACK
from .offices import register

pytestmark = pytest.mark.live

MUNICIPALITY = "b-town"


def lgcloud(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lgcloud.cli", *args, "--stack", STACK], capture_output=True, text=True, timeout=timeout
    )


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = lgcloud(*args)
    assert result.returncode == 0, f"lgcloud {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def listed(configured):
    return {s["municipality"]: s for s in json.loads(ok("backup", "list", "--json").stdout)}


@pytest.mark.municipalities
def test_every_municipality_has_a_full_backup_after_the_first_configure(listed, m):
    stanza = listed[m.id]
    assert stanza["status"] == "ok", stanza
    assert [b for b in stanza["backups"] if b["type"] == "full"], stanza
    assert stanza["wal"]["max"], "no WAL archived"


@pytest.mark.municipalities
def test_every_primary_archives_its_wal_without_failing(configured, vm, m):
    db = vm(f"{m.id}-db")
    switched = db.check_output("cd / && chpst -u postgres psql -XAtq -c 'SELECT pg_walfile_name(pg_switch_wal())'")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = db.check_output(f'cd / && chpst -u postgres psql -XAtq -c "{archived(switched)}"')
        if done == "t":
            break
        time.sleep(0.5)
    assert done == "t", f"{switched} not archived within 30 s"
    failing = db.check_output(
        "cd / && chpst -u postgres psql -XAtq -c "
        "'SELECT last_failed_time > last_archived_time FROM pg_stat_archiver WHERE last_failed_time IS NOT NULL'"
    )
    assert failing in ("", "f"), "the last archive attempt failed"


def test_a_database_as_root_cannot_read_another_municipalitys_backups(configured, vm):
    """Root on Ａ市's primary holds Ａ市's certificate; the repository admits it to Ａ市's stanza only."""
    own = vm("a-city-db").run("cd / && chpst -u postgres pgbackrest --stanza=a-city --output=json info")
    assert own.rc == 0 and json.loads(own.stdout)[0]["status"]["code"] == 0, own.stderr
    other = vm("a-city-db").run("cd / && chpst -u postgres pgbackrest --stanza=b-town --output=json info")
    assert other.rc != 0 or json.loads(other.stdout)[0]["status"]["code"] != 0, other.stdout
    assert "b-town" not in other.stdout.replace('"name":"b-town"', ""), other.stdout
    # Another municipality's restore, with Ａ市's key, is refused before a byte of it is sent.
    taken = vm("a-city-db").run("cd / && chpst -u postgres pgbackrest --stanza=b-town --pg1-path=/tmp/stolen restore")
    assert taken.rc != 0 and vm("a-city-db").run("test -e /tmp/stolen/PG_VERSION").rc != 0


def test_a_restore_to_a_moment_shows_the_rows_of_that_moment(configured, vm):
    before = register(vm, MUNICIPALITY, "復旧 前", "フッキュウ")
    time.sleep(1.5)
    moment = datetime.datetime.now().astimezone()
    time.sleep(1.5)
    after = register(vm, MUNICIPALITY, "復旧 後", "フッキュウ")
    # The restore needs the WAL holding `after` in the archive: a switch sends it now.
    vm(f"{MUNICIPALITY}-db").check_output("cd / && chpst -u postgres psql -XAtq -c 'SELECT pg_switch_wal()'")
    try:
        result = ok("restore", "--municipality", MUNICIPALITY, "--to", moment.isoformat(), "--json")
        report = json.loads(result.stdout)
        assert report["vm"] == f"{MUNICIPALITY}-db-restore" and report["residents"] > 0, report
        restored = vm(f"{MUNICIPALITY}-db-restore")
        rows = restored.check_output(
            'cd / && chpst -u postgres psql -XAtq -d jumin -c "SELECT resident_code FROM residents '
            f"WHERE resident_code IN ('{before}', '{after}')\""
        ).split()
        assert rows == [before], f"restored to {moment}: expected only {before}, found {rows}"
        live = vm(f"{MUNICIPALITY}-db").check_output(
            "cd / && chpst -u postgres psql -XAtq -d jumin "
            f"-c \"SELECT count(*) FROM residents WHERE resident_code = '{after}'\""
        )
        assert live == "1", "the restore touched the live database"
        again = lgcloud("restore", "--municipality", MUNICIPALITY, "--latest")
        assert again.returncode == 2 and "already holds a restore" in again.stderr, again.stderr
    finally:
        discarded = lgcloud("restore", "--municipality", MUNICIPALITY, "--discard")
    assert discarded.returncode == 0, discarded.stderr
    status = json.loads(ok("status", "--json").stdout)
    assert f"{MUNICIPALITY}-db-restore" not in {v["name"] for v in status["vms"]}


def test_a_restore_time_outside_the_backups_is_refused_with_the_range(configured, listed):
    oldest = min(b["stopped"] for b in listed[MUNICIPALITY]["backups"])
    for when in ("2020-01-01T00:00:00+09:00", "2099-01-01T00:00:00+09:00"):
        result = lgcloud("restore", "--municipality", MUNICIPALITY, "--to", when)
        assert result.returncode == 2, result.stderr
        assert "outside what b-town's backups can restore" in result.stderr and "restorable: from" in result.stderr
    assert oldest  # the range named starts at the oldest backup's end
    unknown = lgcloud("restore", "--municipality", "z-town", "--latest")
    assert unknown.returncode == 2 and "z-town" in unknown.stderr, unknown.stderr


def test_backup_check_passes_and_names_a_damaged_file(configured, vm, listed):
    assert ok("backup", "check", "--municipality", MUNICIPALITY).returncode == 0
    label = listed[MUNICIPALITY]["backups"][-1]["label"]
    repository = vm("backup")
    # The largest file of the newest backup: a table's data, as stored (compressed).
    victim = repository.check_output(
        f"ls -S $(find /var/lib/pgbackrest/backup/{MUNICIPALITY}/{label}/pg_data/base -type f) | head -1"
    )
    assert victim, "no file to damage"
    repository.check_output(
        f"cp -p {victim} {victim}.good && printf XXXXXXXX | dd of={victim} bs=1 seek=40 conv=notrunc 2>/dev/null"
    )
    try:
        damaged = lgcloud("backup", "check", "--municipality", MUNICIPALITY)
        assert damaged.returncode == 1, damaged.stdout + damaged.stderr
        named = victim.split(f"/{MUNICIPALITY}/", 1)[1]  # <backup label>/pg_data/base/<db>/<file>
        assert f"invalid checksum '{named}'" in damaged.stderr, damaged.stderr
    finally:
        repository.check_output(f"mv {victim}.good {victim}")
    assert ok("backup", "check", "--municipality", MUNICIPALITY).returncode == 0


def test_an_in_place_restore_is_shown_and_refused_without_confirm(configured, vm):
    count = "cd / && chpst -u postgres psql -XAtq -d jumin -c 'SELECT count(*) FROM residents'"
    before = vm(f"{MUNICIPALITY}-db").check_output(count)
    result = lgcloud("restore", "--municipality", MUNICIPALITY, "--latest", "--target", "in-place")
    assert result.returncode == 2, result.stderr
    assert "takes every write after it out of service" in result.stderr and "--confirm" in result.stderr
    assert vm(f"{MUNICIPALITY}-db").check_output(count) == before


def test_a_restore_is_refused_while_the_stack_has_changes_pending(configured, tmp_path):
    """Making a restore VM runs the stack's program: it must not apply anything else on the way."""
    document = yaml.safe_load(stack_file(STACK).read_text(encoding="utf-8"))
    municipality = next(m for m in document["config"]["lgcloud:municipalities"] if m["id"] == MUNICIPALITY)
    municipality["allocation"] = {"app": {"vcpus": 0.5, "memory_mb": 640}}
    changed = tmp_path / f"Pulumi.{STACK}.yaml"
    changed.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lgcloud.cli",
            "restore",
            "--file",
            str(changed),
            "--municipality",
            MUNICIPALITY,
            "--latest",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "is not as its config declares" in result.stderr and f"{MUNICIPALITY}-app" in result.stderr, result.stderr
    status = json.loads(ok("status", "--json").stdout)
    assert f"{MUNICIPALITY}-db-restore" not in {v["name"] for v in status["vms"]}
