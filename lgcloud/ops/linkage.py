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

from ..paths import PROJECT_ROOT
from ..state.chains import Anchor, anchors, keep_anchors
from .access import ssh_config_path
from .drill.measure import primary_of
from .lab import Lab, LabError

__all__ = ["BROKER", "ChainCheck", "linkage_core", "tenant_chain", "verify_records", "walk_chain"]

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
# still there; the chain now shorter; or the record there has another hash (the chain recomputed).
Anchored = Literal["first check", "held", "shorter", "rewritten"]


@dataclass(frozen=True)
class ChainCheck:
    keeper: str  # a municipality id, or BROKER
    vm: str  # where the chain was read
    records: int  # how many were walked
    first_broken: int | None  # position of the first record whose link does not hold; None: intact
    last_hash: str  # of the last record ("" for an empty chain)
    anchored: Anchored

    @property
    def intact(self) -> bool:
        return self.first_broken is None and self.anchored in ("first check", "held")


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


def walk_chain(keeper: str, vm: str, lines: Iterator[tuple[str, str]], anchor: Anchor | None = None) -> ChainCheck:
    """Walk (hash, text) `lines` of the chain `keeper` keeps on `vm`: its links, then its anchor."""
    core = linkage_core()
    counted, last, at_anchor = 0, "", None

    def counting() -> Iterator[tuple[str, str]]:
        nonlocal counted, last, at_anchor
        for stored, text in lines:
            counted += 1
            last = stored
            if anchor is not None and counted == anchor.records:
                at_anchor = stored
            yield stored, text

    broken = core.first_broken(counting())
    for _ in counting():  # the rest of the stream, to count what the chain holds
        pass
    anchored: Anchored = "first check"
    if anchor is not None:
        if counted < anchor.records:
            anchored = "shorter"
        elif anchor.records and at_anchor != anchor.last_hash:
            anchored = "rewritten"
        else:
            anchored = "held"
    return ChainCheck(keeper, vm, counted, broken, last, anchored)


def tenant_chain(lab: Lab, vm: str, database: str = "chukan", anchor: Anchor | None = None) -> ChainCheck:
    """Walk the chain of the tenant database `database` on `vm`."""
    psql = f"cd / && chpst -u postgres psql -XAtq -v ON_ERROR_STOP=1 -d {shlex.quote(database)} -c "
    return walk_chain(database, vm, _lines(lab, vm, psql + shlex.quote(_TENANT_CHAIN)), anchor)


def verify_records(lab: Lab, municipalities: list[str] | None = None) -> list[ChainCheck]:
    """Walk the chains of these municipalities' tenants (all, and the broker's, when None), each
    against its anchor; an intact chain's end becomes its anchor for the next check."""
    kept = anchors(lab.stack)
    checks = []
    for municipality in municipalities or [m.id for m in lab.cfg.municipalities]:
        vm = primary_of(lab, lab.pair(municipality))
        checks.append(replace(tenant_chain(lab, vm, anchor=kept.get(municipality)), keeper=municipality))
    if municipalities is None:
        lines = _lines(lab, "broker", "python3 -", stdin=_BROKER_CHAIN.encode())
        checks.append(walk_chain(BROKER, "broker", lines, kept.get(BROKER)))
    for check in checks:
        if check.intact:
            kept[check.keeper] = Anchor(check.records, check.last_hash)
    keep_anchors(lab.stack, kept)
    return checks
