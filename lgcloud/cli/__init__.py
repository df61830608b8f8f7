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
import sys

from ..errors import EXIT_INTERRUPTED, OperatorError
from . import (
    backup,
    ca,
    card,
    clerk,
    configure,
    deploy,
    down,
    drill,
    exporter,
    graph,
    incident,
    linkage,
    maintenance,
    report,
    restore,
    sla,
    status,
    validate,
)
from .options import Options, common_flags
from .output import Output

__all__ = ["main", "parser"]

# In the order an operator's day goes.
_VERBS = (
    validate,
    deploy,
    status,
    configure,
    drill,
    backup,
    restore,
    ca,
    clerk,
    linkage,
    card,
    maintenance,
    sla,
    incident,
    report,
    graph,
    exporter,
    down,
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lgcloud", description="A lab for a municipal joint-use cloud (自治体クラウド).")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = common_flags()
    for verb in _VERBS:
        verb.add(verbs, common)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
