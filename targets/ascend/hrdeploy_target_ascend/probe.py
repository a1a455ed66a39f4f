"""What of the Ascend stack is on this machine: the toolkit (atc, version.info), the runtime
(ais_bench + aclruntime importable), the driver (npu-smi, /dev/davinci*). No side effects
beyond running ``npu-smi info`` once."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrdeploy.errors import UserError
from hrdeploy.kit.probe import ToolchainStatus, find_tool, importable, run_tool
from hrdeploy.kit.probe import device_nodes as _device_nodes

from .commands import normalise_soc
from .parsers import NpuSmiInfo, choose_chip, parse_npu_smi_info, parse_version_info

TOOLKIT_DEFAULT = Path("/usr/local/Ascend/ascend-toolkit/latest")
#: npu-smi is installed by the driver package outside the toolkit, often not on PATH
NPU_SMI_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/local/Ascend/driver/tools")


def find_npu_smi() -> str | None:
    return find_tool("npu-smi", NPU_SMI_DIRS)


def run_npu_smi(args: tuple[str, ...] = ("info",), timeout: float = 15.0) -> str | None:
    exe = find_npu_smi()
    return None if exe is None else run_tool([exe, *args], timeout)


def query_chips() -> NpuSmiInfo | None:
    text = run_npu_smi(("info",))
    if text is None:
        return None
    info = parse_npu_smi_info(text)
    return info if info.chips else None


def davinci_nodes() -> list[str]:
    # /dev/davinci0.. are the chips; davinci_manager is the control node
    return _device_nodes("davinci")


def toolkit_version() -> tuple[str | None, str | None]:
    """(version, file it came from) from the toolkit's version.info."""
    roots = [os.environ.get("ASCEND_HOME_PATH"), os.environ.get("ASCEND_TOOLKIT_HOME")]
    atc = shutil.which("atc")
    if atc:  # .../latest/compiler/bin/atc or .../latest/bin/atc
        roots += [str(p) for p in list(Path(atc).resolve().parents)[1:3]]
    roots.append(str(TOOLKIT_DEFAULT))
    for root in filter(None, roots):
        for rel in ("version.info", "compiler/version.info", "runtime/version.info"):
            p = Path(root) / rel
            if p.is_file():
                try:
                    v = parse_version_info(p.read_text(errors="replace"))
                except OSError:
                    continue
                if v:
                    return v, str(p)
    return None, None


@dataclass
class AscendStatus(ToolchainStatus):
    atc: str | None
    version: str | None
    version_file: str | None
    ais_bench: bool
    aclruntime: bool
    npu_smi: str | None
    davinci: list[str]
    chips: NpuSmiInfo | None
    notes: list[str] = field(default_factory=list)

    @property
    def can_convert(self) -> bool:
        return self.atc is not None

    @property
    def can_run(self) -> bool:
        return self.ais_bench and self.aclruntime and bool(self.davinci or (self.chips and self.chips.chips))

    def findings(self) -> dict[str, Any]:
        return {"atc": self.atc, "toolkit_version": self.version, "version_file": self.version_file,
                "ais_bench": self.ais_bench, "aclruntime": self.aclruntime, "npu_smi": self.npu_smi,
                "davinci": self.davinci, "driver_version": self.chips.driver_version if self.chips else None}


def status(query_devices: bool = True) -> AscendStatus:
    version, vfile = toolkit_version()
    return AscendStatus(atc=shutil.which("atc"), version=version, version_file=vfile,
                        ais_bench=importable("ais_bench"), aclruntime=importable("aclruntime"),
                        npu_smi=find_npu_smi(), davinci=davinci_nodes(),
                        chips=query_chips() if query_devices else None)


def resolve_soc(soc: str | None, device: int | None = None) -> tuple[str, str]:
    """(soc_version, how it was found). ``auto`` reads npu-smi info and refuses to guess
    without a device."""
    if soc and str(soc).lower() != "auto":
        return normalise_soc(str(soc)), "given"
    info = query_chips()
    if info is None:
        raise UserError("--soc auto needs a device: npu-smi info found no Ascend chip here",
                        "pass --soc for the machine that will run the model, e.g. --soc Ascend310P3 "
                        "(\"Ascend\" + the Name column of its npu-smi info)")
    chip = choose_chip(info, device)
    if chip is None:
        which = f"device {device}" if device is not None else "a chip with a readable name"
        raise UserError(f"npu-smi info lists no {which}",
                        "pass --soc explicitly, e.g. --soc Ascend310P3")
    names = {c.soc for c in info.chips if c.soc}
    if device is None and len(names) > 1:
        raise UserError(f"this machine has several chip types ({', '.join(sorted(names))})",
                        "pass --device N or --soc to choose one")
    return chip.soc or "", f"npu-smi info: device {chip.device} is {chip.name}"


def default_device(info: NpuSmiInfo | None) -> int:
    """The first healthy chip's logical id (of ``npu-smi info``), else 0."""
    if info:
        healthy = [c for c in info.chips if c.health.upper() == "OK" and c.device is not None]
        pick = healthy or [c for c in info.chips if c.device is not None]
        if pick:
            return int(pick[0].device)  # type: ignore[arg-type]
    return 0
