"""What every verb is given: the parsed arguments, the stack they name, and where to write."""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model.config import parse, read_file, stack_file, stack_name
from ..model.schema import StackConfig
from ..state.lock import Holder, stack_lock
from .output import Output

__all__ = ["Options", "common_flags", "wait_flag"]


def common_flags() -> argparse.ArgumentParser:
    """The flags every verb takes, declared once: which stack."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default="dev", help="stack name: stacks/Pulumi.<stack>.yaml (default: dev)")
    common.add_argument("--file", help="a stack config file (Pulumi.<stack>.yaml) instead of --stack")
    return common


def wait_flag(sub: argparse.ArgumentParser) -> None:
    """For verbs that hold the stack: queue behind another run instead of refusing."""
    sub.add_argument("--wait", action="store_true", help="wait for another run on the stack to finish")


@dataclass
class Options:
    """One verb's run: its arguments and its output."""

    args: argparse.Namespace
    output: Output

    @property
    def path(self) -> Path:
        return Path(self.args.file) if self.args.file else stack_file(self.args.stack)

    @property
    def stack(self) -> str:
        return stack_name(self.path) if self.args.file else str(self.args.stack)

    def values(self) -> dict[str, Any]:
        """The stack's config values, not yet validated (the engine hands them to the program)."""
        return read_file(self.path)

    def config(self, values: dict[str, Any] | None = None) -> StackConfig:
        """The stack's config (from `values` already read, or the file), validated; ConfigInvalid
        (exit 2) names every problem."""
        return parse(self.values() if values is None else values, self.stack, str(self.path))

    def hold(self, verb: str) -> AbstractContextManager[Holder]:
        """The stack's lock for `verb` (StackBusy, exit 2, when another run holds it; --wait queues)."""
        return stack_lock(self.stack, verb, self.flag("wait"))

    def flag(self, name: str) -> bool:
        """A verb's own switch (--json, -v): False for verbs that do not take it."""
        return bool(getattr(self.args, name, False))
