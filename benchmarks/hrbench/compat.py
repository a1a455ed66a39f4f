"""Work-around for a core limitation met while building the benchmark's artifacts.

``hrdeploy.onnx_export.run_onnx`` feeds all reference inputs as one batch; a model that only runs
at a fixed batch (DEKR: batch 1) then fails in ``export`` and ``convert`` after the ONNX file
is written ("Got invalid dimensions for input ... Got: 4 Expected: 1"). The fix belongs in
core (run the stack through ``hrdeploy.stream.run_arrays``, which chunks and pads to the
runner's batch sizes); until it lands, :func:`batch_safe_reference_runs` applies exactly
that for the duration of a build. For dynamic-batch models it changes nothing.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np


def _run_onnx_in_batches(path: Path, x: np.ndarray) -> list[np.ndarray]:
    from hrdeploy.stream import run_arrays
    from hrdeploy.ort_runner import OrtRunner

    runner = OrtRunner(path)
    return run_arrays(runner, x)


def core_handles_fixed_batch() -> bool:
    import inspect

    from hrdeploy import export

    return "run_arrays" in inspect.getsource(export.run_onnx)


@contextlib.contextmanager
def batch_safe_reference_runs() -> Iterator[bool]:
    """Yields True when the work-around was needed and applied."""
    from hrdeploy import convert, export

    if core_handles_fixed_batch():
        yield False
        return
    saved = export.run_onnx, convert.run_onnx
    export.run_onnx = convert.run_onnx = _run_onnx_in_batches
    try:
        yield True
    finally:
        export.run_onnx, convert.run_onnx = saved
