"""A stand-in for a vendor tool that hangs: ``hung_tool.py MODE RECORD``.

It starts a helper process of its own (as model_deploy starts TPU-MLIR's programs), prints a
line, writes "pids TOOL HELPER" to RECORD and then sleeps forever. Every SIGINT or SIGTERM it
gets is appended to RECORD by name; MODE "polite" then exits, "stubborn" goes on sleeping (only
SIGKILL stops it). Used by the tests of hrdeploy.kit.toolrun and of interrupted commands, with
the helpers below that read RECORD and tell whether the tool's processes are gone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    mode, record = sys.argv[1], sys.argv[2]

    def note(sig: int, frame: object) -> None:
        with open(record, "a") as f:
            f.write(signal.Signals(sig).name + "\n")
        if mode == "polite":
            sys.exit(0)

    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print("compiling", flush=True)
    with open(record, "a") as f:
        f.write(f"pids {os.getpid()} {helper.pid}\n")
    while True:
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (an ended one waiting to be collected is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has ended; it waits only for its parent (here: init) to collect it
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def tool_pids(record: Path, timeout: float = 30.0) -> tuple[int, int]:
    """(tool, helper) process ids, once the tool has started its helper."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = record.read_text().splitlines() if record.exists() else []
        for line in lines:
            if line.startswith("pids "):
                tool_pid, helper_pid = line.split()[1:]
                return int(tool_pid), int(helper_pid)
        time.sleep(0.02)
    raise AssertionError(f"the stand-in tool never started: {record}")


def signals(record: Path) -> list[str]:
    """The signals the tool got, in order ("SIGINT", "SIGTERM")."""
    return [ln for ln in Path(record).read_text().splitlines() if not ln.startswith("pids ")]


def gone(*pids: int, timeout: float = 10.0) -> bool:
    """Whether all ``pids`` have ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


if __name__ == "__main__":
    sys.exit(main())
