"""Running a vendor tool (atc, model_deploy, vamc, ais_bench, bmrt_test, pip...) as a child the
user can stop.

Every tool step runs through :func:`run_tool`:

* in a process group of its own (``start_new_session``), so stopping it reaches the helper
  processes it starts (model_deploy runs a chain of TPU-MLIR programs) and nothing of it outlives
  hrdeploy;
* with its output streamed line by line into its log file while it runs (a hung tool's log
  shows how far it got) and kept for the caller to parse;
* with a timeout: a tool that hangs is stopped and the step fails with one line naming it, the
  limit and the log;
* when hrdeploy is interrupted (Ctrl-C, SIGTERM), the group gets SIGINT, then SIGTERM, then
  SIGKILL, with short waits in between, so a tool can clean up; then the KeyboardInterrupt
  goes on to the CLI, which exits 130.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Sequence

from ..errors import ToolchainMissing, UserError

#: a compiler step: ATC or TPU-MLIR on a large network can take hours on a small build box
COMPILE_TIMEOUT = 4 * 3600.0
#: a measuring step (ais_bench, vamp, bmrt_test): it runs for the seconds asked, plus loading
MEASURE_TIMEOUT = 3600.0
#: how long a stopped tool gets after each of SIGINT and SIGTERM before the next signal
GRACE_SECONDS = 3.0
#: what a timeout's message suggests
TIMEOUT_HINT = "raise the limit with --step-timeout SECONDS"


def step_timeout(seconds: float | None, option: str = "--step-timeout") -> float | None:
    """The timeout a user asked for: None for the default (:data:`COMPILE_TIMEOUT`), 0 for no
    limit; anything but a finite number >= 0 is refused with one line."""
    if seconds is None:
        return COMPILE_TIMEOUT
    if not (0 <= seconds < float("inf")):
        raise UserError(f"{option} takes a number of seconds (0: no limit), got {seconds}")
    return float(seconds) or None


def run_tool(argv: Sequence[str | os.PathLike[str]], *, step: str, log: Path | None = None,
             cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float | None = COMPILE_TIMEOUT, append: bool = False,
             on_line: Callable[[str], None] | None = None, tool_hint: str = "",
             timeout_hint: str = TIMEOUT_HINT, grace: float = GRACE_SECONDS
             ) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end and return it with stdout and stderr merged into ``stdout``
    (``stderr`` is None). A non-zero exit is the caller's to judge.

    ``step`` names the step in messages ("atc batch 4"). ``env`` is the full environment (None:
    this process's). ``log`` receives the output as it comes (``append``: after a ``$ command``
    line, for logs that collect several commands); ``on_line`` sees every line too.
    A ``timeout`` in seconds (None: none) stops the tool's group and raises :class:`UserError`;
    an executable that cannot be started raises :class:`ToolchainMissing` with ``tool_hint``.
    """
    args = [os.fspath(a) for a in argv]
    fh = _open_log(log, append, args)  # first: a log that cannot be written must not orphan a tool
    try:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
                                start_new_session=True)
    except BaseException as e:
        if fh is not None:
            fh.close()
        if isinstance(e, (FileNotFoundError, PermissionError)):
            raise ToolchainMissing(f"cannot start {step}: {args[0]}: {e.strerror}",
                                   tool_hint or "install the vendor toolchain") from None
        raise
    lines: list[str] = []
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines, fh, on_line),
                              name=f"hrdeploy-log-{Path(args[0]).name}", daemon=True)
    reader.start()
    try:
        with _sigterm_as_interrupt():
            proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc, grace)
        _finish(reader)
        where = f"; log: {log}" if log else ""
        raise UserError(f"{step} did not finish within {_duration(timeout)} and was stopped{where}",
                        timeout_hint) from None
    except BaseException:  # KeyboardInterrupt (Ctrl-C, or SIGTERM above), or anything else
        stop_group(proc, grace)
        _finish(reader)
        raise
    # a helper the tool left running would hold the pipe open and outlive the step
    stop_group(proc, grace, leftovers_only=True)
    _finish(reader)
    return subprocess.CompletedProcess(args, proc.returncode, "".join(lines), None)


def stop_group(proc: subprocess.Popen[str], grace: float = GRACE_SECONDS, leftovers_only: bool = False) -> None:
    """Stop every process of ``proc``'s group: SIGINT (a tool's own Ctrl-C handling), then
    SIGTERM, then SIGKILL, each after ``grace`` seconds; returns when the group is gone.
    ``leftovers_only``: the leader has exited; skip the polite SIGINT for what it left behind."""
    pgid = proc.pid  # start_new_session made the child the leader of a group of its own id
    signals = (signal.SIGTERM, signal.SIGKILL) if leftovers_only else (signal.SIGINT, signal.SIGTERM,
                                                                       signal.SIGKILL)
    try:
        for sig in signals:
            if _group_gone(proc, pgid):
                return
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.monotonic() + (grace if sig != signal.SIGKILL else 10.0)
            while time.monotonic() < deadline:
                if _group_gone(proc, pgid):
                    return
                time.sleep(0.02)
    except KeyboardInterrupt:  # a second Ctrl-C: no more patience, but nothing left running
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        raise


def _group_gone(proc: subprocess.Popen[str], pgid: int) -> bool:
    proc.poll()  # reap the leader: a zombie still counts as a member of its group
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a member we may not signal (setuid): nothing more we can do
        return True
    # the helpers' zombies wait for init to collect them (some inits take their time); an
    # ended process is not one to wait for
    return not _running_members(pgid)


def _running_members(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (not a zombie); True where
    ``/proc`` cannot tell."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while a tool runs, so the tool is stopped before
    hrdeploy dies (the CLI installs the same handler for the whole command; library callers get
    it here). Only the main thread can set handlers; a handler already set is left alone."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _open_log(log: Path | None, append: bool, args: list[str]) -> IO[str] | None:
    if log is None:
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "a" if append else "w", encoding="utf-8")
    if append:
        fh.write(f"\n$ {shlex.join(args)}\n")
        fh.flush()
    return fh


def _pump(stream: IO[str] | None, lines: list[str], fh: IO[str] | None,
          on_line: Callable[[str], None] | None) -> None:
    """The reader thread: the tool's output into ``lines`` and the log (which it closes)."""
    assert stream is not None
    try:
        for line in stream:
            lines.append(line)
            if fh is not None:
                fh.write(line)
                fh.flush()
            if on_line is not None:
                on_line(line)
    finally:
        stream.close()
        if fh is not None:
            fh.close()


def _finish(reader: threading.Thread) -> None:
    # the group is gone, so the pipe is at its end; the timeout only guards against a
    # descendant that escaped the group (setsid) and still holds the pipe
    reader.join(timeout=10.0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "no limit"
    if seconds >= 3600 and seconds % 360 == 0:
        return f"{seconds / 3600:g} h ({seconds:g} s)"
    if seconds >= 60 and seconds % 6 == 0:
        return f"{seconds / 60:g} min ({seconds:g} s)"
    return f"{seconds:g} s"
