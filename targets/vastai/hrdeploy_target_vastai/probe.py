"""What of the VastAI stack is on this machine: vamc (compiler), vaststreamx / vaststream
(runtime), vamp (benchmark), vasmi and /dev/vastai* (driver and cards). ``vasmi`` needs root,
so it is only called when running as root."""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .configs import VAMC, VAMP
from .parsers import VasmiInfo, parse_vasmi

#: where the SDK puts vamp and vasmi when the activate scripts were not sourced
EXTRA_BIN_DIRS = ("/opt/vastai/vastpipe/vastpipe/bin", "/opt/vastai/vaststreamx/vaststreamx/bin", "/usr/local/bin")


def which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for d in EXTRA_BIN_DIRS:
        p = os.path.join(d, tool)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def device_nodes() -> list[str]:
    # /dev/vastai0, /dev/vastai1 ... are the dies; *_version, *_ctl etc. are control nodes
    return sorted(p for p in glob.glob("/dev/vastai*") if re.search(r"vastai\d+$", p))


def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def run_vasmi(*args: str, timeout: float = 10.0) -> str | None:
    exe = which("vasmi")
    if exe is None or not _is_root():
        return None
    try:
        proc = subprocess.run([exe, *args], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def query_cards() -> VasmiInfo | None:
    """Card mode and clocks of die 0 (``vasmi getcardmode`` / ``vasmi getfreq -d 0 -i 0``)."""
    texts = [t for t in (run_vasmi("getcardmode", "-d", "0", "-i", "0"), run_vasmi("getfreq", "-d", "0", "-i", "0")) if t]
    if not texts:
        return None
    info = parse_vasmi("\n".join(texts))
    return info if info.entries else None


@dataclass
class VastaiStatus:
    vamc: str | None
    vamp: str | None
    vasmi: str | None
    vaststreamx: bool
    vaststream: bool
    nodes: list[str]
    cards: VasmiInfo | None
    root: bool
    notes: list[str] = field(default_factory=list)

    @property
    def can_convert(self) -> bool:
        return self.vamc is not None

    @property
    def can_run(self) -> bool:
        return self.vaststreamx and bool(self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {"vamc": self.vamc, "vamp": self.vamp, "vasmi": self.vasmi, "vaststreamx": self.vaststreamx,
                "vaststream": self.vaststream, "device_nodes": self.nodes, "root": self.root,
                "card_types": self.cards.card_types if self.cards else [],
                "smi_version": self.cards.smi_version if self.cards else None,
                "can_convert": self.can_convert, "can_run": self.can_run}


def status() -> VastaiStatus:
    return VastaiStatus(vamc=which(VAMC), vamp=which(VAMP), vasmi=which("vasmi"),
                        vaststreamx=importable("vaststreamx"), vaststream=importable("vaststream"),
                        nodes=device_nodes(), cards=query_cards(), root=_is_root())


def vamc_version() -> str | None:
    """The vamc wheel's version when it is installed as a Python package."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    for dist in ("vamc", "vastai-vamc"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None
