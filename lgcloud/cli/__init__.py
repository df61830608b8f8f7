"""``lgcloud``: bring the lab up, configure it, look at it, rehearse disasters, take it down.

One module per verb; the flags every verb takes are declared once (``options``), every verb
writes through one ``Output``, and an ``OperatorError`` becomes its message, its hint and its
exit code here, in one place::

    lgcloud validate --stack dev
    lgcloud up --stack dev
    lgcloud status --json
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import EXIT_INTERRUPTED, OperatorError
from .options import Options, common_flags
from .output import Output

__all__ = ["main", "parser"]

# Verb -> the module that declares it, in the order an operator's day goes. A run imports only
# its own verb's module (an `lgcloud sla` needs neither Docker's SDK nor Pulumi's); --help, all.
_VERBS = {
    "validate": "validate",
    "up": "deploy",
    "preview": "deploy",
    "status": "status",
    "configure": "configure",
    "drill": "drill",
    "backup": "backup",
    "restore": "restore",
    "ca": "ca",
    "clerk": "clerk",
    "linkage": "linkage",
    "card": "card",
    "maintenance": "maintenance",
    "sla": "sla",
    "incident": "incident",
    "report": "report",
    "graph": "graph",
    "exporter": "exporter",
    "down": "down",
}


def parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The command line of every verb, or of `verb` alone when it is one."""
    top = argparse.ArgumentParser(prog="lgcloud", description="A lab for a municipal joint-use cloud (自治体クラウド).")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = common_flags()
    chosen = [_VERBS[verb]] if verb in _VERBS else list(dict.fromkeys(_VERBS.values()))
    for name in chosen:
        importlib.import_module(f".{name}", __name__).add(verbs, common)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv[0] if argv else None).parse_args(argv)
    opts = Options(args, Output())
    try:
        code: int = args.run(opts)
        return code
    except OperatorError as exc:
        opts.output.fail(str(exc), exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        opts.output.note("interrupted; run the same command again to complete it")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
