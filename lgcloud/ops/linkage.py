"""番号連携 operations: checking the 情報提供等記録 chains where they are kept.

Each municipality's tenant of the 中間サーバー keeps its chain in its own cluster (``chukan.records``,
read on whichever side serves now); the broker keeps its own (``/var/lib/broker``). The chain is
streamed to the controller as (hash, canonical text) lines and walked with the same rules the
services append with (``roles/linkage/files/linkage_core.py``)::

    with Lab(cfg) as lab:
        for check in verify_records(lab, ["a-city"]):
            print(check.keeper, check.records, check.first_broken)
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from types import ModuleType
from typing import Literal

from ..model.naming import CHUKAN_DATABASE
from ..paths import PROJECT_ROOT
from ..state.chains import Anchor, anchors, keep_anchors
from .access import ssh_config_path
from .chain import Base, tenant_base
from .drill.measure import primary_of
from .lab import Lab, LabError

__all__ = [
    "BROKER",
    "Base",
    "ChainCheck",
    "Purge",
    "linkage_core",
    "purge_records",
    "tenant_base",
    "tenant_chain",
    "verify_records",
    "walk_chain",
]

BROKER = "broker"  # the keeper name of the broker's own chain
# (hash, text) per line, tab-separated: canonical JSON escapes every control character, and COPY
# escapes nothing else in it but the backslash.
_TENANT_CHAIN = "COPY (SELECT hash, record FROM chukan.records ORDER BY position) TO STDOUT"
# Run by python3 on the broker VM: its chain, in order, one (hash, text) line per record.
_BROKER_CHAIN = (
    "import sqlite3, sys\n"
    "db = sqlite3.connect('file:/var/lib/broker/broker.sqlite3?mode=ro', uri=True)\n"
    "for hash_, text in db.execute('SELECT hash, record FROM records ORDER BY position'):\n"
    "    sys.stdout.write(hash_ + '\\t' + text.replace('\\\\', '\\\\\\\\') + '\\n')\n"
)


@cache
def linkage_core() -> ModuleType:
    """The rules the broker and the 中間サーバー run, imported from the role that ships them."""
    spec = importlib.util.spec_from_file_location("linkage_core", PROJECT_ROOT / "roles/linkage/files/linkage_core.py")
    if spec is None or spec.loader is None:
        raise LabError("roles/linkage/files/linkage_core.py is missing from this checkout")
    module = importlib.util.module_from_spec(spec)
    sys.modules["linkage_core"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


# Against where the chain ended at the last intact check (lgcloud.state.chains): no check before;
# still there; the chain now shorter; the record there has another hash (the chain recomputed); or
# that record was purged since, past its retention (the chain's base says so, and is walked from).
Anchored = Literal["first check", "held", "shorter", "rewritten", "purged since"]


@dataclass(frozen=True)
class ChainCheck:
    keeper: str  # a municipality id, or BROKER
    vm: str  # where the chain was read
    records: int  # how many were walked
    first_broken: int | None  # position of the first record whose link does not hold; None: intact
    last_hash: str  # of the last record ("" for an empty chain)
    anchored: Anchored
    first_position: int = 0  # where the walk began: 0, or past the records a purge removed

    @property
    def intact(self) -> bool:
        return self.first_broken is None and self.anchored in ("first check", "held", "purged since")

    @property
    def length(self) -> int:
        """The chain's length through its last record, purged records counted."""
        return self.first_position + self.records


def _lines(lab: Lab, vm: str, command: str, stdin: bytes = b"") -> Iterator[tuple[str, str]]:
    """(hash, text) pairs as `command` prints them on `vm`, streamed (a chain may be millions long).

    Through OpenSSH with the stack's ssh_config (host keys pinned): a process of its own decrypts
    while this one hashes, which halves the walk of a long chain against paramiko's."""
    ssh = ["ssh", "-F", str(ssh_config_path(lab.stack)), "-o", "BatchMode=yes", vm, command]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(ssh, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, bufsize=1 << 20)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        try:
            for line in proc.stdout:
                stored, _, text = line.rstrip(b"\n").decode().partition("\t")
                yield stored, text.replace("\\\\", "\\") if "\\" in text else text
        finally:
            proc.stdout.close()
            status = proc.wait()
        if status != 0:
            errors.seek(0)
            raise LabError(f"{vm}: reading the 情報提供等記録 exited {status}: {errors.read().decode().strip()[-300:]}")


def walk_chain(
    keeper: str, vm: str, lines: Iterator[tuple[str, str]], anchor: Anchor | None = None, base: Base | None = None
) -> ChainCheck:
    """Walk (hash, text) `lines` of the chain `keeper` keeps on `vm` from `base`: its links, then
    its anchor (Anchor.records: the chain's length through its last record at the last check)."""
    core = linkage_core()
    base = base or Base()
    counted, last, at_anchor = 0, "", None

    def counting() -> Iterator[tuple[str, str]]:
        nonlocal counted, last, at_anchor
        for stored, text in lines:
            counted += 1
            last = stored
            if anchor is not None and base.start + counted == anchor.records:
                at_anchor = stored
            yield stored, text

    broken = core.first_broken(counting(), base.previous or core.GENESIS, base.start)
    for _ in counting():  # the rest of the stream, to count what the chain holds
        pass
    anchored: Anchored = "first check"
    if anchor is not None:
        if base.start + counted < anchor.records:
            anchored = "shorter"
        elif anchor.records and anchor.records <= base.start:
            # The anchored record is gone with a purge: the last purged one must be it, or later.
            held = anchor.records < base.start or base.previous == anchor.last_hash
            anchored = "purged since" if held else "rewritten"
        elif anchor.records and at_anchor != anchor.last_hash:
            anchored = "rewritten"
        else:
            anchored = "held"
    return ChainCheck(keeper, vm, counted, broken, last, anchored, base.start)


def tenant_chain(lab: Lab, vm: str, database: str = CHUKAN_DATABASE, anchor: Anchor | None = None) -> ChainCheck:
    """Walk the chain of the tenant database `database` on `vm`, from its base."""
    base = tenant_base(lab, vm, database)
    psql = f"cd / && chpst -u postgres psql -XAtq -v ON_ERROR_STOP=1 -d {shlex.quote(database)} -c "
    return walk_chain(database, vm, _lines(lab, vm, psql + shlex.quote(_TENANT_CHAIN)), anchor, base)


def verify_records(lab: Lab, municipalities: list[str] | None = None, reanchor: bool = False) -> list[ChainCheck]:
    """Walk the chains of these municipalities' tenants (all, and the broker's, when None), each
    against its anchor; an intact chain's end becomes its anchor for the next check. `reanchor`:
    the anchors are set aside, and the chains as they are now become them (after an operator has
    looked into a chain found shorter or rewritten, e.g. after a failback kept records beside it)."""
    kept = {} if reanchor else anchors(lab.stack)
    if reanchor and municipalities is not None:  # only the chains walked are anchored anew
        kept = {k: v for k, v in anchors(lab.stack).items() if k not in municipalities}
    checks = []
    for municipality in municipalities or [m.id for m in lab.cfg.municipalities]:
        vm = primary_of(lab, lab.pair(municipality))
        checks.append(replace(tenant_chain(lab, vm, anchor=kept.get(municipality)), keeper=municipality))
    if municipalities is None:
        lines = _lines(lab, "broker", "python3 -", stdin=_BROKER_CHAIN.encode())
        checks.append(walk_chain(BROKER, "broker", lines, kept.get(BROKER)))
    for check in checks:
        if check.intact:
            kept[check.keeper] = Anchor(check.length, check.last_hash)
    keep_anchors(lab.stack, kept)
    return checks


# --- Retention: records past it purged, the chain's base kept -------------------------------------

# One transaction as postgres on the tenant's primary, appends held off meanwhile: the records older
# than the retention, up to the first younger one (a record out of time order stops the purge
# there) and never the chain's newest; the base moved to the last of them; COMMIT, or ROLLBACK to
# show only. Prints: count|first|last|oldest at|newest at.
_PURGE = """
BEGIN;
LOCK TABLE chukan.records IN SHARE ROW EXCLUSIVE MODE;
CREATE TEMP TABLE purge_plan ON COMMIT DROP AS SELECT least(
    coalesce((SELECT min(position) FROM chukan.records
              WHERE (record::jsonb ->> 'at')::timestamptz >= now() - make_interval(years => :years)),
             (SELECT max(position) FROM chukan.records)),
    (SELECT max(position) FROM chukan.records)) AS keep_from;
SELECT count(*) || '|' || coalesce(min(position)::text, '') || '|' || coalesce(max(position)::text, '') || '|'
       || coalesce(min(record::jsonb ->> 'at'), '') || '|' || coalesce(max(record::jsonb ->> 'at'), '')
  FROM chukan.records WHERE position < (SELECT keep_from FROM purge_plan);
INSERT INTO chukan.chain_base (position, hash, purged)
  SELECT position, hash, (SELECT count(*) FROM chukan.records WHERE position < (SELECT keep_from FROM purge_plan))
  FROM chukan.records WHERE position = (SELECT keep_from FROM purge_plan) - 1;
DELETE FROM chukan.records WHERE position < (SELECT keep_from FROM purge_plan);
"""


@dataclass(frozen=True)
class Purge:
    """A tenant's 情報提供等記録 past their retention: shown, or purged."""

    keeper: str  # the municipality
    vm: str  # its primary, where they were read
    retention_years: int
    records: int  # older than the retention (and before every younger record)
    first: int | None  # their positions
    last: int | None
    oldest: str | None  # their times (ISO)
    newest: str | None
    purged: bool  # False: only shown


def purge_records(
    lab: Lab, municipalities: list[str] | None = None, apply: bool = False, database: str = CHUKAN_DATABASE
) -> list[Purge]:
    """The tenants' records past the stack's retention (lgcloud:linkage), purged if `apply`."""
    years = lab.cfg.linkage.record_retention_years
    found = []
    for municipality in municipalities or [m.id for m in lab.cfg.municipalities]:
        vm = primary_of(lab, lab.pair(municipality))
        script = _PURGE.replace(":years", str(int(years))) + ("COMMIT;" if apply else "ROLLBACK;")
        out = lab.run(
            vm,
            f"cd / && chpst -u postgres psql -XAtq -v ON_ERROR_STOP=1 -d {shlex.quote(database)}",
            stdin=script,
            timeout=600,
        )
        line = next(x for x in out.splitlines() if x.count("|") == 4)
        count, first, last, oldest, newest = line.split("|")
        found.append(
            Purge(
                municipality,
                vm,
                years,
                int(count),
                int(first) if first else None,
                int(last) if last else None,
                oldest or None,
                newest or None,
                apply and int(count) > 0,
            )
        )
    return found
