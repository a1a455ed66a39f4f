"""What Sophon software and hardware this machine has: devices (bm-smi), sophon.sail, and
the TPU-MLIR toolchain. No side effects; bm-smi is run with a timeout."""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
from typing import Any

from .parsers import parse_bm_smi

DEVICE_GLOBS = ("/dev/bm-sophon*", "/dev/bm-tpu*")


def device_nodes() -> list[str]:
    return sorted(p for g in DEVICE_GLOBS for p in glob.glob(g))


def query_devices(timeout: float = 15.0) -> tuple[list[dict[str, Any]], str]:
    """Devices from ``bm-smi`` (display table with --noloop, else the PCIe text format),
    falling back to the device nodes; and a note on how they were found."""
    nodes = device_nodes()
    exe = shutil.which("bm-smi")
    if exe:
        env = {**os.environ, "TERM": "dumb"}
        attempts = [[exe, "--noloop"]]
        if nodes:
            attempts.append([exe, "--start_dev=0", f"--last_dev={max(0, len(nodes) - 1)}", "--text_format"])
        for argv in attempts:
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                                     stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                continue
            devices = parse_bm_smi(out.stdout)
            if devices:
                return devices, f"bm-smi ({' '.join(argv[1:])})"
    if nodes:
        return [{"id": i, "node": n, "board": None, "chip": None} for i, n in enumerate(nodes)], \
            "device nodes (bm-smi not on PATH: chip family unknown)"
    return [], "no Sophon device (no bm-smi output, no /dev/bm-sophon* nodes)"


def sail_status() -> dict[str, Any]:
    """Whether ``sophon.sail`` imports in this interpreter (the SDK wheel can be present and
    still fail on missing sophon-opencv symbols: report the message)."""
    try:
        spec = importlib.util.find_spec("sophon.sail")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return {"importable": False, "reason": "sophon.sail not installed"}
    try:
        import sophon.sail as sail  # noqa: F401
    except Exception as e:  # ImportError, OSError from the .so
        return {"importable": False, "reason": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"}
    return {"importable": True, "version": getattr(sail, "__version__", None)}
