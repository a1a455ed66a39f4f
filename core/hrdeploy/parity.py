"""Numerical comparison of two runs of the same network: the figures users see after export,
convert and verify."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .model import ModelSpec, TaskCheck, Tolerance, Variant


@dataclass
class OutputDiff:
    name: str
    max_abs: float
    max_ref: float
    max_rel: float          # max_abs / max|ref|
    cosine_min: float       # worst per-sample cosine similarity
    sample_diff_rel: float  # max error of (y[i] - y[0]) relative to its own range: input dependence kept?
    passed: bool
    limits: dict[str, Any] = field(default_factory=dict)
    # NaN/inf values in each run (of ``size``): then the figures above mean nothing
    ref_non_finite: int = 0
    test_non_finite: int = 0
    size: int = 0

    @property
    def finite(self) -> bool:
        return not (self.ref_non_finite or self.test_non_finite)

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.name, "max_abs": self.max_abs, "max_ref": self.max_ref, "max_rel": self.max_rel,
                "cosine_min": self.cosine_min, "sample_diff_rel": self.sample_diff_rel,
                "passed": self.passed, "limits": self.limits,
                "non_finite": {"reference": self.ref_non_finite, "test": self.test_non_finite, "of": self.size}}


@dataclass
class ParityReport:
    reference: str
    test: str
    precision: str
    inputs: int
    outputs: list[OutputDiff]
    task: TaskCheck | None
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs) and (self.task is None or self.task.passed)

    @property
    def finite(self) -> bool:
        return all(o.finite for o in self.outputs)

    def failures(self) -> list[str]:
        out = []
        for o in self.outputs:
            if o.ref_non_finite:
                out.append(f"{self.reference} itself produces NaN/inf in output {o.name!r} "
                           f"({o.ref_non_finite} of {o.size} values): the reference is broken")
            if o.test_non_finite:
                out.append(f"{self.test} produces NaN/inf in output {o.name!r} ({o.test_non_finite} of {o.size} values)")
            if o.finite and not o.passed:
                out.append(f"output {o.name!r}: max rel {o.max_rel:.3g}, cosine {o.cosine_min:.6f} "
                           f"(limits {o.limits})")
        if self.task is not None and not self.task.passed and self.finite:
            out.append(f"{self.task.name}: {self.task.text}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "test": self.test, "precision": self.precision,
                "inputs": self.inputs, "passed": self.passed, "tolerance": self.tolerance.to_dict(),
                "outputs": [o.to_dict() for o in self.outputs],
                "task": None if self.task is None else {"name": self.task.name, "value": self.task.value,
                                                        "passed": self.task.passed, "text": self.task.text}}

    def rows(self) -> list[list[str]]:
        return table_rows(self.to_dict())


def _cosine_per_sample(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2 = a.reshape(len(a), -1).astype(np.float64)
    b2 = b.reshape(len(b), -1).astype(np.float64)
    num = (a2 * b2).sum(1)
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(den > 0, num / np.where(den > 0, den, 1), np.where(np.abs(a2 - b2).max(1) == 0, 1.0, 0.0))
    return cos


def compare_output(name: str, ref: np.ndarray, test: np.ndarray, tol: Tolerance) -> OutputDiff:
    ref = np.asarray(ref, np.float32)
    test = np.asarray(test, np.float32).reshape(ref.shape)
    ref_bad, test_bad = non_finite_count(ref), non_finite_count(test)
    diff = np.abs(ref.astype(np.float64) - test)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_ref = float(np.abs(ref).max()) if ref.size else 0.0
    max_rel = max_abs / max_ref if max_ref > 0 else max_abs
    cos = float(_cosine_per_sample(ref, test).min()) if len(ref) else 1.0
    if len(ref) > 1:
        dref = ref[1:].astype(np.float64) - ref[:1]
        dtest = test[1:].astype(np.float64) - test[:1]
        scale = float(np.abs(dref).max()) or 1.0
        sample_rel = float(np.abs(dref - dtest).max()) / scale
    else:
        sample_rel = 0.0
    passed = not (ref_bad or test_bad)
    if tol.max_rel is not None:
        passed = passed and max_rel <= tol.max_rel
    if tol.min_cosine is not None:
        passed = passed and cos >= tol.min_cosine
    return OutputDiff(name, max_abs, max_ref, max_rel, cos, sample_rel, passed,
                      {"max_rel": tol.max_rel, "min_cosine": tol.min_cosine}, ref_bad, test_bad, int(ref.size))


def non_finite_count(values: np.ndarray) -> int:
    """How many of ``values`` are NaN or infinite."""
    return int(values.size - np.count_nonzero(np.isfinite(values)))


def compare(spec: ModelSpec, variant: Variant, reference: Sequence[np.ndarray], test: Sequence[np.ndarray],
            precision: str, reference_name: str, test_name: str,
            names: Sequence[str] | None = None) -> ParityReport:
    tol = variant.tolerance(precision)
    names = list(names or variant.outputs)
    outs = [compare_output(n, r, t, tol) for n, r, t in zip(names, reference, test)]
    try:
        with np.errstate(all="ignore"):
            task = spec.task_check(variant, list(reference), list(test), tol)
    except NotImplementedError:
        task = None
    if task is not None and not all(o.finite for o in outs):
        # an argmax over NaN agrees with itself: the task figure is no evidence either way
        task = TaskCheck(task.name, float("nan"), False, "not meaningful on non-finite outputs")
    return ParityReport(reference_name, test_name, precision, len(reference[0]), outs, task, tol)


#: the columns of every parity table (export, convert, verify, eval --compare, bench)
TABLE_COLUMNS = ("output", "max abs", "max rel (of max|ref|)", "min cosine", "sample-diff rel", "verdict")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """Rows of a parity table from :meth:`ParityReport.to_dict` (or a manifest's ``parity``),
    so a report read back from JSON prints exactly as a fresh one."""
    def non_finite(o: dict[str, Any]) -> bool:
        counts = o.get("non_finite") or {}
        return bool(counts.get("reference") or counts.get("test"))

    rows = [[o["output"], f"{o['max_abs']:.3g}", f"{o['max_rel']:.2e}", f"{o['cosine_min']:.6f}",
             f"{o['sample_diff_rel']:.2e}", "NaN/inf" if non_finite(o) else "ok" if o["passed"] else "BREACH"]
            for o in report["outputs"]]
    task = report.get("task")
    if task:
        verdict = ("NaN/inf: " if any(non_finite(o) for o in report["outputs"])
                   else "ok: " if task["passed"] else "BREACH: ")
        rows.append([task["name"], "", "", "", f"{task['value']:.4g}", verdict + task["text"]])
    return rows
