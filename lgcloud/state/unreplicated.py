"""Rows only a fenced primary held, kept for the operator before failback replaces its cluster.

An asynchronous municipality may acknowledge writes that never reached the backup site. Failback
rebuilds the center from the backup; before that, the rows the backup lacks (or holds otherwise)
are copied here to be entered again. They are personal data: one file per municipality and
failback, 0600 in the stack's 0700 state directory; reports and logs name the file and the
住民票コード count, never the rows."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .directory import state_dir, write_atomic

__all__ = ["keep_unreplicated", "unreplicated_dir"]


def unreplicated_dir(stack: str) -> Path:
    path = state_dir(stack) / "unreplicated"
    path.mkdir(exist_ok=True, mode=0o700)
    return path


def keep_unreplicated(
    stack: str, municipality: str, source: str, rows: list[dict[str, Any]], records: Sequence[dict[str, Any]] = ()
) -> Path:
    """Write the rows read from `source` (the fenced primary) for `municipality`, and its tenant's
    情報提供等記録 the backup lacks (position, record, hash, as the chain held them); the file's path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = unreplicated_dir(stack) / f"{stamp}-{municipality}.json"
    document = {
        "municipality": municipality,
        "read_from": source,
        "kept_at": stamp,
        "rows": rows,
        "records": list(records),
    }
    write_atomic(path, json.dumps(document, ensure_ascii=False, indent=2), 0o600)
    return path
