"""Errors that are meant for people.

Anything a user can fix (a missing file, an unknown model, an absent toolchain, a checkpoint
of the wrong model) is raised as a :class:`UserError`. The CLI prints its message on one line
and exits with code 2; a traceback is shown only with ``--debug``.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. ``str(err)`` is the one line the CLI prints."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class WeightsError(UserError):
    """A checkpoint that does not fit the model: wrong model, wrong width, corrupt file."""


class ToolchainMissing(UserError):
    """A vendor tool or runtime is not installed or not on PATH."""


class ParityError(Exception):
    """A converted or exported model breached its stated tolerance (exit code 1).
    ``report`` is the :class:`hrdeploy.parity.ParityReport` with the figures."""

    exit_code = 1

    def __init__(self, message: str, report: object = None) -> None:
        self.report = report
        super().__init__(message)
