"""One way to write: data (tables, JSON) to stdout, progress and errors to stderr."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["Output"]


class Output:
    """Where a verb writes: ``data`` (stdout) for what a script reads, ``err`` (stderr) for people."""

    def __init__(self, data: Console | None = None, err: Console | None = None) -> None:
        self.data = data or Console(soft_wrap=True)
        self.err = err or Console(stderr=True, soft_wrap=True)

    def json(self, document: Any) -> None:
        self.data.print_json(json.dumps(document, ensure_ascii=False))

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[str]],
        caption: str | None = None,
        right: Iterable[str] = (),
    ) -> None:
        """A table on stdout; columns named in `right` are right-aligned (figures)."""
        aligned = set(right)
        table = Table(title=title, caption=caption)
        for column in columns:
            table.add_column(column, justify="right" if column in aligned else "left")
        for row in rows:
            table.add_row(*row)
        self.data.print(table)

    def done(self, message: str) -> None:
        self.err.print(f"[green]✓[/] {message}")

    def note(self, message: str) -> None:
        self.err.print(message, highlight=False)

    def fail(self, message: str, hint: str = "") -> None:
        """An error as the operator reads it: what is wrong (verbatim, no markup), then what to do."""
        self.err.print("[red]✗[/] ", end="")
        self.err.print(message, markup=False, highlight=False)
        if hint:
            self.err.print(hint, markup=False, highlight=False)
