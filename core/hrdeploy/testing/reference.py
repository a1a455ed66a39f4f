"""Checks against the official reference outputs of tests/fixtures/ref/.

Those fixtures hold what an *official* implementation (timm, HRNet-Image-Classification,
HRNet-Human-Pose-Estimation, DEKR) computes on seeded weights, together with the input and a
``meta`` JSON string saying how they were made (tests/reference_outputs/make_reference_outputs.py
re-creates them). A plugin's network is compared with two figures:

* ``max_rel``: max|got - ref| / max|ref|, relative to the largest reference value because
  seeded HRNet outputs reach ~1e4 while real ones are small;
* ``diff_rel``: the same for the difference of the first two samples (y[1] - y[0]). White noise
  plus global pooling makes two samples' logits nearly equal, so the input-dependent part is ~1 %
  of the output and ``max_rel`` alone would not see it go wrong.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrdeploy.model import Tolerance
from hrdeploy.parity import compare_output


def load_reference(path: str | Path) -> dict[str, Any]:
    """The arrays of a reference .npz, ``meta`` parsed, and ``input`` float32 NCHW (rebuilt
    exactly from ``input_int8 * input_scale`` where the fixture stores it that way)."""
    with np.load(path) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files}
    out["meta"] = json.loads(str(out["meta"]))
    if "input" not in out:
        out["input"] = out["input_int8"].astype(np.float32) * np.float32(out["input_scale"])
    return out


@dataclass(frozen=True)
class ReferenceDiff:
    name: str
    max_rel: float
    diff_rel: float | None       # None for a single sample

    def __str__(self) -> str:
        diff = "n/a" if self.diff_rel is None else f"{self.diff_rel:.2e}"
        return f"{self.name}: max rel {self.max_rel:.2e}, sample-difference rel {diff}"


def reference_diff(name: str, got: np.ndarray, ref: np.ndarray) -> ReferenceDiff:
    if not np.isfinite(got).all():
        raise AssertionError(f"{name}: non-finite values")
    d = compare_output(name, ref, got, Tolerance())
    return ReferenceDiff(name, d.max_rel, d.sample_diff_rel if len(ref) > 1 else None)


def assert_matches_reference(name: str, got: np.ndarray, ref: np.ndarray, max_rel: float,
                             diff_rel: float | None = None) -> ReferenceDiff:
    """Fail unless ``got`` is within ``max_rel`` of ``ref`` and (with two samples or more) its
    sample difference within ``diff_rel``; print the measured figures either way."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{name}: shape {got.shape}, reference {ref.shape}"
    d = reference_diff(name, got, ref)
    print(d)
    assert d.max_rel <= max_rel, f"{d} > {max_rel:.1e}"
    if diff_rel is not None:
        assert d.diff_rel is not None and d.diff_rel <= diff_rel, f"{d}: sample difference > {diff_rel:.1e}"
    return d
