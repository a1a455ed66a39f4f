"""What of the VastAI stack is on this machine: vamc (compiler), vaststreamx / vaststream
(runtime), vamp (benchmark), vasmi and /dev/vastai* (driver and cards). ``vasmi`` needs root,
so it is only called when running as root."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hrdeploy.kit.probe import ToolchainStatus, find_tool, importable, is_root, run_tool
from hrdeploy.kit.probe import device_nodes as _device_nodes

from .configs import VAMC, VAMP
from .parsers import VasmiInfo, parse_vasmi

#: where the SDK puts vamp and vasmi when the activate scripts were not sourced
EXTRA_BIN_DIRS = ("/opt/vastai/vastpipe/vastpipe/bin", "/opt/vastai/vaststreamx/vaststreamx/bin", "/usr/local/bin")


def which(tool: str) -> str | None:
    return find_tool(tool, EXTRA_BIN_DIRS)


def device_nodes() -> list[str]:
    # /dev/vastai0, /dev/vastai1 ... are the dies; *_version, *_ctl etc. are control nodes
    return _device_nodes("vastai")


def run_vasmi(*args: str, timeout: float = 10.0) -> str | None:
    exe = which("vasmi")
    if exe is None or not is_root():
        return None
    return run_tool([exe, *args], timeout)


def query_cards() -> VasmiInfo | None:
    """Card mode and clocks of die 0 (``vasmi getcardmode`` / ``vasmi getfreq -d 0 -i 0``)."""
    texts = [t for t in (run_vasmi("getcardmode", "-d", "0", "-i", "0"), run_vasmi("getfreq", "-d", "0", "-i", "0")) if t]
    if not texts:
        return None
    info = parse_vasmi("\n".join(texts))
    return info if info.entries else None


@dataclass
class VastaiStatus(ToolchainStatus):
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

    def findings(self) -> dict[str, Any]:
        return {"vamc": self.vamc, "vamp": self.vamp, "vasmi": self.vasmi, "vaststreamx": self.vaststreamx,
                "vaststream": self.vaststream, "device_nodes": self.nodes, "root": self.root,
                "card_types": self.cards.card_types if self.cards else [],
                "smi_version": self.cards.smi_version if self.cards else None}


def status() -> VastaiStatus:
    return VastaiStatus(vamc=which(VAMC), vamp=which(VAMP), vasmi=which("vasmi"),
                        vaststreamx=importable("vaststreamx"), vaststream=importable("vaststream"),
                        nodes=device_nodes(), cards=query_cards(), root=is_root())


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
