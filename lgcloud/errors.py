"""What an operator can fix: one error type carrying its exit code and a hint.

Every verb exits with one of these codes (README, "Exit codes")::

    >>> OperatorError("no Docker Engine answers", hint="run `make host`").exit_code
    1
"""

from __future__ import annotations

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_NOT_EVALUATED", "OperatorError"]

EXIT_FAILED = 1  # something the verb set out to do did not happen: a run failed, a target was missed
EXIT_BAD_INPUT = 2  # bad config, argument or lab state; nothing was changed
EXIT_NOT_EVALUATED = 3  # nothing was missed, but something could not be measured
EXIT_INTERRUPTED = 130  # Ctrl-C


class OperatorError(Exception):
    """A failure the operator can act on: the message says what is wrong, the hint what to do."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code
