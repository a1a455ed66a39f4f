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


#: The exit codes of every ``hrdeploy`` command (README "Errors", ``hrdeploy --help``).
EXIT_OK = 0
EXIT_BREACH = 1  # parity or accuracy breach: the result is written and kept
EXIT_USER = 2  # usage, input or environment error: nothing half-written is left behind
EXIT_INTERNAL = 3  # a bug in hrdeploy or a plugin: the traceback is shown with --debug
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: what was already written is kept

EXIT_CODES_HELP = ("Exit codes: 0 success; 1 parity or accuracy breach (the result is kept); "
                   "2 usage, input or environment error; 3 internal error; 130 interrupted.")


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the path it concerns, what went wrong in
    words, and what to do. Used by the CLI's error boundary for any OSError nobody caught
    closer to the cause (read-only folder, full disk, a folder where a file was expected)."""
    import errno

    path = exc.filename if exc.filename is not None else ""
    where = f" {path}" if path else ""
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    code = exc.errno
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return f"permission denied:{where} (choose a location you can write to, or fix its permissions)"
    if code == errno.EROFS:
        return f"read-only file system:{where} (choose a writable location)"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device writing{where} (free some space or choose another output location)"
    if isinstance(exc, IsADirectoryError):
        return f"{path or 'the path'} is a folder, but a file is needed here (name a file, not a folder)"
    if isinstance(exc, NotADirectoryError):
        blocker = _file_in_the_way(str(path)) if path else None
        if blocker == str(path):
            return f"{path} is a file, but a folder is needed here (choose another location)"
        if blocker:
            return f"{blocker} is a file, but {path} needs it to be a folder (choose another location)"
        return f"{path or 'a path'} is not a folder (name a folder)"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder:{where}"
    if isinstance(exc, FileExistsError):
        if path and _file_in_the_way(str(path)) == str(path):  # mkdir over a file
            return f"{path} is a file, but a folder is needed here (choose another location)"
        return f"already exists:{where} (choose another name)"
    if code == errno.ENAMETOOLONG:
        return f"file name too long:{where}"
    if code == errno.EMFILE:
        return "too many open files (raise 'ulimit -n' or lower --workers)"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason.rstrip('.')}:{where}" if where else reason


def _file_in_the_way(path: str) -> str | None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) that is not a folder."""
    from pathlib import Path

    p = Path(path)
    for candidate in (p, *p.parents):
        if candidate.exists():
            return str(candidate) if not candidate.is_dir() else None
    return None
