"""Stand-in for ``npu-smi``: prints a recorded ``npu-smi info`` (FAKE_NPU_SMI) or
``npu-smi info -m`` (FAKE_NPU_SMI_M) fixture; without one it fails like a machine without
the driver."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    args = sys.argv[1:]
    var = "FAKE_NPU_SMI_M" if args[:2] == ["info", "-m"] else "FAKE_NPU_SMI" if args[:1] == ["info"] else None
    path = os.environ.get(var or "", "")
    if not var or not path:
        print("dcmi model initialized failed, because the device is used. ret is -8020")
        return 255
    sys.stdout.write(Path(path).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
