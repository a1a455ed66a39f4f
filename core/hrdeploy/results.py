"""What the library calls return: one dataclass each, with ``to_json()`` for the document the
CLI writes or prints. The CLI only renders these; the notification hooks receive them too."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .parity import ParityReport


@dataclass
class ExportResult:
    """``export``: the ONNX file written, its metadata and PyTorch-vs-ONNX-Runtime parity."""

    onnx_path: Path
    metadata: dict[str, Any]
    parity: ParityReport
    reference_path: Path

    def to_json(self) -> dict[str, Any]:
        return {"onnx": str(self.onnx_path), "metadata": self.metadata, "parity": self.parity.to_dict(),
                "reference": str(self.reference_path)}


@dataclass
class EvalResult:
    """``evaluate``: the result document (written to ``path``), the metric's table rows and,
    with ``compare``, one parity report per input size."""

    document: dict[str, Any]
    path: Path
    rows: list[tuple[str, str]] = field(default_factory=list)
    compare: list[tuple[str, ParityReport]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.document

    def breaches(self) -> list[str]:
        """The ``--compare`` failures, ``"SIZE: output ..."`` each (empty when none)."""
        return [f"{size}: {f}" for size, r in self.compare for f in r.failures()]


@dataclass
class BenchResult:
    """``bench``: the report document (one row per batch size) and, on a simulator, the parity
    on the stored reference inputs that replaces timing."""

    document: dict[str, Any]
    parity: ParityReport | None = None

    def to_json(self) -> dict[str, Any]:
        return self.document


@dataclass
class VerifyResult:
    """``verify``: the parity against the stored reference and where the report was written."""

    report: ParityReport
    document: dict[str, Any]
    path: Path

    @property
    def passed(self) -> bool:
        return self.report.passed

    def to_json(self) -> dict[str, Any]:
        return self.document
