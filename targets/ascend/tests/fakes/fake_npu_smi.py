"""Stand-in for ``npu-smi``: prints a recorded ``npu-smi info`` (FAKE_NPU_SMI) or
``npu-smi info -m`` (FAKE_NPU_SMI_M) fixture; without one it fails like a machine without
the driver.

Its arguments are checked against npu-smi's documented queries (the CANN driver guides): ``info``,
``info -m``, ``info -l``, ``info -t <type> -i <id> [-c <chip>]``, ``-v``. Only the first two
have recorded output; the others, and anything else, are refused with one line and exit 1
(npu-smi's own wording for a bad command is not recorded)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

RECORDED = {("info",): "FAKE_NPU_SMI", ("info", "-m"): "FAKE_NPU_SMI_M"}


def documented(args: list[str]) -> bool:
    if args in (["info"], ["info", "-m"], ["info", "-l"], ["-v"]):
        return True
    # info -t <type> -i <id> [-c <chip id>]
    return (len(args) in (5, 7) and args[:2] == ["info", "-t"] and args[3] == "-i" and args[4].isdigit()
            and (len(args) == 5 or (args[5] == "-c" and args[6].isdigit())))


def main() -> int:
    args = sys.argv[1:]
    if not documented(args):
        print(f"npu-smi: invalid command or parameter: {' '.join(args) or '(none)'}")
        return 1
    var = RECORDED.get(tuple(args))
    if var is None:
        print(f"npu-smi (stand-in): no recorded output of 'npu-smi {' '.join(args)}'")
        return 1
    path = os.environ.get(var, "")
    if not path:
        print("dcmi model initialized failed, because the device is used. ret is -8020")
        return 255
    sys.stdout.write(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
