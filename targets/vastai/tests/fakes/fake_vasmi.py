"""Stand-in for ``vasmi``, VastAI's card query tool: checks every argument against vasmi's
documented commands and options and prints the recorded capture (FAKE_VASMI,
tests/fixtures/toolchains/vasmi_getcardmode_getfreq_VA1-16G.txt): ``getcardmode`` its card-mode
block, ``getfreq`` its clock block.

Documented (VastModelZOO's deploy guides, VastAI scripts that call it):
queries ``list``, ``getcardmode``, ``getfreq``, ``getmem``, ``summary``, ``getpwr``, ``gettemp``,
``getvideomulticore``; setters ``setcardmode``, ``setconfig``, ``setvideomulticore``; options
``-d <device ids>`` and ``-i <die ids>`` (``0`` or ``0,1``) and ``--display-format=json``.
Setters are refused outright (hrdeploy must only ever query a card), as are queries the capture
does not cover. vasmi's own wording for a bad argument is not recorded anywhere; the stand-in
prints one ``vasmi: ...`` line and exits 1 (callers key on the exit code)."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

QUERIES = ("list", "getcardmode", "getfreq", "getmem", "summary", "getpwr", "gettemp", "getvideomulticore")
SETTERS = ("setcardmode", "setconfig", "setvideomulticore")
RECORDED = ("getcardmode", "getfreq")
IDS = re.compile(r"^\d+(,\d+)*$")
FORMATS = ("json",)


def parse(argv: list[str]) -> tuple[str, dict[str, str]]:
    """``vasmi COMMAND [-d IDS] [-i IDS] [--display-format=json]``; raises ValueError."""
    if not argv:
        raise ValueError("no command given; commands: " + ", ".join(QUERIES + SETTERS))
    command, rest = argv[0], argv[1:]
    if command not in QUERIES + SETTERS:
        raise ValueError(f"unknown command '{command}'")
    opts: dict[str, str] = {}
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in ("-d", "-i"):
            if i + 1 >= len(rest) or not IDS.match(rest[i + 1]):
                raise ValueError(f"option {a} needs a list of ids such as 0 or 0,1")
            opts[a[1]] = rest[i + 1]
            i += 2
        elif a.startswith("--display-format="):
            value = a.split("=", 1)[1]
            if value not in FORMATS:
                raise ValueError(f"unknown display format '{value}'")
            opts["format"] = value
            i += 1
        else:
            raise ValueError(f"unknown option '{a}'")
    return command, opts


def blocks(text: str) -> tuple[str, str]:
    """The capture split into its card-mode part (with the version header) and its clock part:
    each die block starts at the ``=====`` rule before an ``Appointed Entry`` line."""
    lines = text.splitlines(keepends=True)
    entries = [i for i, ln in enumerate(lines) if ln.startswith("Appointed Entry")]
    cut = entries[1] - 1 if len(entries) > 1 else len(lines)
    return "".join(lines[:cut]), "".join(lines[cut:])


def main() -> int:
    try:
        command, opts = parse(sys.argv[1:])
    except ValueError as e:
        print(f"vasmi: {e}")
        return 1
    if command in SETTERS:
        print(f"vasmi (stand-in): refusing '{command}': hrdeploy must not change a card's settings")
        return 1
    path = os.environ.get("FAKE_VASMI")
    if not path:
        print("vasmi: no device found")
        return 1
    # the capture is of device 0, die 0
    for opt in ("d", "i"):
        if any(v != "0" for v in opts.get(opt, "0").split(",")):
            print(f"vasmi: {'device' if opt == 'd' else 'die'} {opts[opt]} not found")
            return 1
    if command not in RECORDED or "format" in opts:
        print(f"vasmi (stand-in): no recorded output of '{' '.join(sys.argv[1:])}'")
        return 1
    card, clocks = blocks(Path(path).read_text())
    sys.stdout.write(card if command == "getcardmode" else clocks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
