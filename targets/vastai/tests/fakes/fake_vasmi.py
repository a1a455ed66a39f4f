"""Stand-in for ``vasmi``: prints the recorded card-mode/clock capture (FAKE_VASMI)."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    path = os.environ.get("FAKE_VASMI")
    if not path or sys.argv[1:2] not in (["getcardmode"], ["getfreq"]):
        print("vasmi: no device found")
        return 1
    sys.stdout.write(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
