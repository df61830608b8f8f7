"""``lgcloud backup run|list|check``: the municipalities' backups in the repository at the backup site."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import EXIT_FAILED
from ..ops.backup import LAB_ZONE, Stanza, backups, check_backups, run_backups
from ..ops.lab import Lab
from .options import Options, wait_flag

__all__ = ["add"]


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _stanza_json(stanza: Stanza) -> dict[str, Any]:
    return {
        "municipality": stanza.municipality,
        "status": stanza.status,
        "wal": {"min": stanza.wal_min, "max": stanza.wal_max},
        "backups": [
            {
                "label": b.label,
                "type": b.kind,
                "started": b.started.isoformat(),
                "stopped": b.stopped.isoformat(),
                "seconds": b.seconds,
                "size_bytes": b.size_bytes,
                "stored_bytes": b.stored_bytes,
            }
            for b in stanza.backups
        ],
    }


def _show(opts: Options, stanzas: list[Stanza], title: str) -> None:
    if opts.flag("json"):
        opts.output.json([_stanza_json(s) for s in stanzas])
        return
    opts.output.table(
        title,
        ("municipality", "backup", "type", "finished", "took", "database", "stored"),
        [
            (
                s.municipality,
                b.label,
                b.kind,
                b.stopped.astimezone(LAB_ZONE).strftime("%Y-%m-%d %H:%M:%S"),
                f"{b.seconds:.0f}s",
                _size(b.size_bytes),
                _size(b.stored_bytes),
            )
            for s in stanzas
            for b in s.backups
        ]
        + [(s.municipality, "—", "", s.status, "", "", "") for s in stanzas if not s.backups],
    )


def run(opts: Options) -> int:
    cfg = opts.config()
    action, municipality = opts.args.action, opts.args.municipality
    lab = Lab(cfg)
    try:
        if action == "list":
            _show(opts, backups(lab, municipality), f"backups of {cfg.stack}")
            return 0
        with opts.hold(f"backup {action}"):
            if action == "run":
                with opts.output.err.status("taking full backups …"):
                    stanzas = run_backups(lab, municipality)
                _show(opts, stanzas, f"backups of {cfg.stack}")
                return 0
            with opts.output.err.status("reading back every backup and WAL file …"):
                checks = check_backups(lab, municipality)
    finally:
        lab.close()
    if opts.flag("json"):
        opts.output.json([c.__dict__ for c in checks])
    else:
        for c in checks:
            if c.ok:
                opts.output.done(f"{c.municipality}: every backup and WAL file matches its checksum")
            else:
                opts.output.fail(f"{c.municipality}: {c.detail}")
    return 0 if all(c.ok for c in checks) else EXIT_FAILED


def add(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "take, list or verify the municipalities' backups (pgBackRest, at the backup site)"
    sub = verbs.add_parser("backup", parents=[common], help=text, description=text)
    sub.add_argument(
        "action",
        choices=("run", "list", "check"),
        help="run: a full backup now; list: what the repository holds; check: read every file against its checksum",
    )
    sub.add_argument("--municipality", help="id or 地方公共団体コード (default: every municipality)")
    sub.add_argument("--json", action="store_true", help="print the result as JSON")
    wait_flag(sub)
    sub.set_defaults(run=run)
