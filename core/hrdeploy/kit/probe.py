"""The checks a target's ``probe()`` is made of: is a vendor tool on PATH (or in the vendor's
usual folder), is a runtime module importable, which device nodes exist, what does a
management tool print.

Shared because every vendor stack is found the same way; the targets differ only in names
(``atc``/``npu-smi``/``/dev/davinci*`` for Ascend, ``vamc``/``vasmi``/``/dev/vastai*`` for
VastAI). Every check is side-effect free and never raises: a probe answers "not here", it does
not fail.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    from ..target import Probe


def find_tool(name: str, extra_dirs: Iterable[str | Path] = ()) -> str | None:
    """``name`` on PATH, else the first executable ``extra_dirs/name`` (vendor installers put
    tools such as npu-smi or vamp outside PATH until their activate script is sourced)."""
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def importable(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it (vendor runtimes load
    drivers on import)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def device_nodes(prefix: str, dev_dir: str | Path = "/dev") -> list[str]:
    """The numbered device nodes ``<dev_dir>/<prefix>N``; control nodes that share the prefix
    (``davinci_manager``, ``vastai_version``...) are left out."""
    numbered = re.compile(rf"{re.escape(prefix)}\d+$")
    return sorted(p for p in glob.glob(os.path.join(str(dev_dir), glob.escape(prefix) + "*")) if numbered.search(p))


def run_tool(argv: Sequence[str], timeout: float = 15.0) -> str | None:
    """The combined stdout/stderr of a management tool (``npu-smi info``, ``vasmi ...``), or
    None when it cannot be started, hangs past ``timeout`` or exits non-zero."""
    try:
        proc = subprocess.run([str(a) for a in argv], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def is_root() -> bool:
    """Whether this process runs as root (some management tools refuse otherwise)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


class ToolchainStatus:
    """What a target's probe found, as one shape for every vendor stack: a subclass (a
    dataclass of the tools, runtimes and devices it looked for) says whether it can convert
    and run here and what its findings are as JSON; :meth:`to_probe` turns that into the
    :class:`hrdeploy.target.Probe` ``hrdeploy list`` shows — available when either works, the
    setup hint appended when neither does."""

    notes: list[str]

    @property
    def can_convert(self) -> bool:
        raise NotImplementedError

    @property
    def can_run(self) -> bool:
        raise NotImplementedError

    def findings(self) -> dict[str, Any]:
        """The subclass's findings as JSON (``hrdeploy doctor --json``)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {**self.findings(), "can_convert": self.can_convert, "can_run": self.can_run}

    def to_probe(self, parts: Sequence[str], hint: str, version: str | None = None,
                 devices: list[dict[str, Any]] | None = None) -> "Probe":
        from ..target import Probe

        usable = self.can_convert or self.can_run
        detail = "; ".join(parts) + ("" if usable else f" ({hint})")
        return Probe(available=usable, detail=detail, version=version, devices=devices or [], extra=self.to_dict())
