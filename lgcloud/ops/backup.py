"""Backups of every municipality's database: pgBackRest, its repository on the `backup` VM at the
backup site, one stanza per municipality (named by its id), WAL archived from every primary.

The controller asks the repository (``pgbackrest info``, ``verify``, ``backup``) over SSH; the
databases and the repository speak to each other over pgBackRest's TLS server on `interconnect`,
each admitted by a certificate of the stack's own CA (lgcloud.state.pki)::

    with Lab(cfg) as lab:
        for stanza in backups(lab):
            print(stanza.municipality, [b.label for b in stanza.backups])
"""

from __future__ import annotations

import datetime
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from ..errors import EXIT_BAD_INPUT, OperatorError
from ..model.naming import BACKUP_COMMON_NAME, backup_client
from ..model.schema import StackConfig
from ..model.topology import plan
from ..state.pki import ensure_certificate
from .lab import Lab, LabError

__all__ = [
    "LAB_ZONE",
    "Backup",
    "BackupCheck",
    "RestoreTarget",
    "Stanza",
    "backups",
    "certify",
    "check_backups",
    "restore_point",
    "run_backups",
]

# The VMs' clock zone (images/vm/Dockerfile): a time given without an offset is read in it.
LAB_ZONE = ZoneInfo("Asia/Tokyo")
REPOSITORY = "backup"  # the VM
# What pgBackRest's verify logs for a file that does not match its manifest.
_BAD_FILE = re.compile(r"^(invalid checksum|invalid size|file missing|missing) '")


def certify(cfg: StackConfig) -> Path:
    """Issue (or keep) the backup certificate of every VM that speaks to the repository; their directory."""
    topology = plan(cfg)
    found = ensure_certificate(
        cfg.stack, REPOSITORY, BACKUP_COMMON_NAME, topology.vm(REPOSITORY).addresses["interconnect"]
    )
    ids = {m.code: m.id for m in cfg.municipalities}
    for vm in (*topology.vms, *topology.restore_vms):
        if vm.role in ("db", "db-replica", "db-restore"):
            ensure_certificate(cfg.stack, vm.name, backup_client(ids[vm.municipality]), vm.addresses["interconnect"])
    return found.certificate.parent


@dataclass(frozen=True)
class Backup:
    label: str  # pgBackRest's, e.g. 20261201-103000F
    kind: str  # full, diff or incr
    started: datetime.datetime
    stopped: datetime.datetime
    size_bytes: int  # of the database
    stored_bytes: int  # in the repository, compressed
    wal_start: str
    wal_stop: str

    @property
    def seconds(self) -> float:
        return (self.stopped - self.started).total_seconds()


@dataclass(frozen=True)
class Stanza:
    municipality: str
    status: str  # "ok", or pgBackRest's message
    backups: tuple[Backup, ...]
    wal_min: str
    wal_max: str

    @property
    def latest(self) -> Backup | None:
        return self.backups[-1] if self.backups else None

    @property
    def oldest(self) -> Backup | None:
        return self.backups[0] if self.backups else None


@dataclass(frozen=True)
class BackupCheck:
    municipality: str
    ok: bool
    detail: str  # what pgBackRest's verify found wrong, naming the backup and file


def _when(epoch: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).astimezone()


def _pgbackrest(lab: Lab, *args: str, timeout: float = 600, check: bool = True) -> str:
    return lab.run(REPOSITORY, f"chpst -u postgres pgbackrest {shlex.join(args)}", timeout=timeout, check=check)


def _stanzas(cfg: StackConfig, municipality: str | None) -> list[str]:
    if municipality is None:
        return [m.id for m in cfg.municipalities]
    for m in cfg.municipalities:
        if municipality in (m.id, m.code):
            return [m.id]
    known = ", ".join(f"{m.id} ({m.code})" for m in cfg.municipalities)
    raise OperatorError(f"no municipality {municipality!r} in stack {cfg.stack}", f"known: {known}", EXIT_BAD_INPUT)


def backups(lab: Lab, municipality: str | None = None) -> list[Stanza]:
    """What the repository holds for each municipality (or the one named), oldest backup first."""
    wanted = _stanzas(lab.cfg, municipality)
    answer = _pgbackrest(lab, "info", "--output=json", timeout=60)
    try:
        document = json.loads(answer)
    except ValueError:
        raise LabError(f"the repository's `pgbackrest info` did not answer JSON: {answer.strip()[:300]}") from None
    found = {entry["name"]: entry for entry in document}
    stanzas = []
    for name in wanted:
        entry = found.get(name, {"status": {"message": "missing stanza path"}, "backup": [], "archive": []})
        archive = [a for a in entry.get("archive", []) if a.get("min")]
        stanzas.append(
            Stanza(
                name,
                "ok" if entry["status"].get("code") == 0 else entry["status"].get("message", "unknown"),
                tuple(
                    Backup(
                        b["label"],
                        b["type"],
                        _when(b["timestamp"]["start"]),
                        _when(b["timestamp"]["stop"]),
                        b["info"]["size"],
                        b["info"]["repository"]["delta"],
                        b["archive"]["start"],
                        b["archive"]["stop"],
                    )
                    for b in entry.get("backup", [])
                ),
                min((a["min"] for a in archive), default=""),
                max((a["max"] for a in archive), default=""),
            )
        )
    return stanzas


def run_backups(lab: Lab, municipality: str | None = None) -> list[Stanza]:
    """A full backup of each municipality's (or the named one's) database now; what the repository holds after."""
    for name in _stanzas(lab.cfg, municipality):
        try:
            _pgbackrest(lab, f"--stanza={name}", "--type=full", "backup", timeout=3600)
        except LabError as exc:
            raise OperatorError(f"the backup of {name} failed: {exc}", "see `lgcloud backup check`") from None
    return backups(lab, municipality)


def check_backups(lab: Lab, municipality: str | None = None) -> list[BackupCheck]:
    """Read back every file of every backup and WAL segment and check it against its checksum.

    pgBackRest's verify exits 0 whatever it finds; what is wrong is in its log: a line per bad file
    (``invalid checksum '<backup>/<file>'``) and a summary whose status is ``error``."""
    results = []
    for name in _stanzas(lab.cfg, municipality):
        try:
            output = _pgbackrest(lab, f"--stanza={name}", "--log-level-console=info", "verify")
        except LabError as exc:  # verify itself failed (a lock, a missing stanza): nothing was checked
            results.append(BackupCheck(name, False, f"verify did not run: {exc}"))
            continue
        if "verify command end: completed successfully" not in output:
            results.append(BackupCheck(name, False, "verify did not complete; nothing was checked"))
            continue
        lines = [line.split(": ", 1)[-1].strip() for line in output.splitlines()]
        found = [line for line in lines if _BAD_FILE.match(line) or " WARN: " in line or " ERROR: " in line]
        broken = "status: error" in output or "ERROR:" in output
        results.append(
            BackupCheck(name, not (found or broken), "; ".join(found) or ("verify failed" if broken else ""))
        )
    return results


@dataclass(frozen=True)
class RestoreTarget:
    """Where recovery stops: the end of the archive, a moment, or just before a transaction."""

    kind: Literal["latest", "time", "xid"]
    time: datetime.datetime | None = None  # the moment; with an xid, a moment the transaction is known to follow
    xid: int | None = None

    @classmethod
    def at(cls, text: str) -> RestoreTarget:
        """A moment in ISO 8601 (``2026-12-01T10:30:00+09:00``; without an offset, the lab's zone)."""
        try:
            moment = datetime.datetime.fromisoformat(text.strip())
        except ValueError:
            raise OperatorError(
                f"--to {text!r} is not a time", "write ISO 8601, e.g. 2026-12-01T10:30:00+09:00", EXIT_BAD_INPUT
            ) from None
        return cls("time", time=moment if moment.tzinfo else moment.replace(tzinfo=LAB_ZONE))

    @classmethod
    def before_xid(cls, text: str) -> RestoreTarget:
        if not text.isdigit() or int(text) < 3:
            raise OperatorError(
                f"--before-xid {text!r} is not a transaction id",
                "give the number `txid_current()` or the audit shows, e.g. 48213",
                EXIT_BAD_INPUT,
            )
        return cls("xid", xid=int(text))

    def describe(self) -> str:
        if self.kind == "time" and self.time:
            return f"time {self.time.isoformat()}"
        return f"before xid {self.xid}" if self.kind == "xid" else "latest"

    def pgbackrest_args(self, backup: str) -> list[str]:
        """pgBackRest's restore options for this target, starting from the backup labelled `backup`."""
        return [f"--set={backup}", *self._target_args()]

    def _target_args(self) -> list[str]:
        if self.kind == "time" and self.time:
            return ["--type=time", f"--target={self.time.isoformat(sep=' ')}", "--target-action=promote"]
        if self.kind == "xid":
            return ["--type=xid", f"--target={self.xid}", "--target-exclusive", "--target-action=promote"]
        return ["--type=default"]


def restore_point(stanza: Stanza, target: RestoreTarget, now: datetime.datetime) -> str:
    """The label of the backup the target starts from; OperatorError (exit 2) when none does."""
    oldest, latest = stanza.oldest, stanza.latest
    if oldest is None or latest is None:
        raise OperatorError(
            f"{stanza.municipality} has no backup to restore from ({stanza.status})",
            f"take one with `lgcloud backup run --municipality {stanza.municipality}`",
            EXIT_BAD_INPUT,
        )
    if target.kind == "latest":
        return latest.label
    if target.kind == "xid":
        # Recovery must start from a backup older than the transaction: the newest that ended
        # before the moment the damage is known to follow, else the oldest (any xid still
        # restorable is after it). Starting later, recovery would never meet the xid.
        before = [b for b in stanza.backups if target.time and b.stopped <= target.time]
        return (max(before, key=lambda b: b.stopped) if before else oldest).label
    assert target.time is not None
    if not oldest.stopped <= target.time <= now:
        raise OperatorError(
            f"--to {target.time.isoformat()} is outside what {stanza.municipality}'s backups can restore",
            f"restorable: from {oldest.stopped.astimezone(LAB_ZONE).isoformat(timespec='seconds')} "
            f"(the end of backup {oldest.label}) to now ({now.astimezone(LAB_ZONE).isoformat(timespec='seconds')})",
            EXIT_BAD_INPUT,
        )
    return max((b for b in stanza.backups if b.stopped <= target.time), key=lambda b: b.stopped).label
