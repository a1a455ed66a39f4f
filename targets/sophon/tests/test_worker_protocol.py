"""The worker's wire protocol and serving loop over real pipes, and the runner's handling of
a worker that cannot start (run with this interpreter, which has no TPU-MLIR or sail)."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy_target_sophon import worker as W
from hrdeploy_target_sophon.runner import WorkerRunner


def test_framing_round_trip_over_a_pipe() -> None:
    r, w = os.pipe()
    arrays = [np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.array([[1, -2]], np.int8),
              np.zeros((0, 5), np.float32), np.float64(3.5) * np.ones(()), np.arange(6, dtype=">i4")]
    errors: list[BaseException] = []

    def writer(fw: object) -> None:
        try:
            W.write_message(fw, {"op": "run", "batches": 5}, arrays)  # type: ignore[arg-type]
        except BaseException as e:  # surfaced below; closing the pipe ends the reader
            errors.append(e)
        finally:
            fw.close()  # type: ignore[attr-defined]

    with os.fdopen(r, "rb") as fr:
        t = threading.Thread(target=writer, args=(os.fdopen(w, "wb"),))
        t.start()  # the arrays may exceed the pipe buffer: write and read concurrently
        try:
            meta, got = W.read_message(fr)
        finally:
            t.join(timeout=30)
    assert not errors
    assert meta == {"op": "run", "batches": 5}
    for a, b in zip(arrays, got):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_read_message_rejects_garbage_and_reports_eof() -> None:
    r, w = os.pipe()
    with os.fdopen(w, "wb") as fw:
        fw.write(b"bmcpu init: skip cpu_user_defined\n")
    with os.fdopen(r, "rb") as fr, pytest.raises(ValueError, match="bad message start"):
        W.read_message(fr)
    r, w = os.pipe()
    os.close(w)
    with os.fdopen(r, "rb") as fr, pytest.raises(EOFError):
        W.read_message(fr)


class AffineBackend:
    """y = 2x + 1 summed over channels: enough to check routing of batches and outputs."""

    def describe(self) -> dict:
        return {"backend": "test", "inputs": [{"name": "image"}], "outputs": [{"name": "a"}, {"name": "b"}]}

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (x,) = inputs
        if x.shape[0] == 3:
            raise ValueError("batch 3 was not compiled")
        return [2 * x + 1, x.sum(axis=1)]


def test_serve_loop_batches_errors_and_close() -> None:
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    fin, fout = os.fdopen(req_r, "rb"), os.fdopen(rep_w, "wb")
    server = threading.Thread(target=W.serve, args=(AffineBackend(), fin, fout))
    server.start()
    send, recv = os.fdopen(req_w, "wb"), os.fdopen(rep_r, "rb")
    xs = [np.random.default_rng(i).normal(size=(b, 3, 4, 4)).astype(np.float32) for i, b in enumerate((1, 2))]
    W.write_message(send, {"op": "run", "batches": 2}, xs)
    meta, outs = W.read_message(recv)
    assert meta["ok"] and len(meta["seconds"]) == 2 and len(outs) == 4
    np.testing.assert_allclose(outs[0], 2 * xs[0] + 1)
    np.testing.assert_allclose(outs[3], xs[1].sum(axis=1), rtol=1e-6)
    W.write_message(send, {"op": "run", "batches": 1}, [np.zeros((3, 3, 4, 4), np.float32)])
    meta, outs = W.read_message(recv)
    assert meta == {"ok": False, "error": "ValueError: batch 3 was not compiled"} and outs == []
    W.write_message(send, {"op": "run", "batches": 2}, xs[:1])
    assert "expected 2 arrays" in W.read_message(recv)[0]["error"]
    W.write_message(send, {"op": "close"})
    assert W.read_message(recv)[0] == {"ok": True}
    server.join(timeout=10)
    assert not server.is_alive()
    for f in (fin, fout, send, recv):
        f.close()


@pytest.mark.parametrize("backend,missing", [("cmodel", "tpu_mlir"), ("sail", "sophon")])
def test_runner_reports_a_worker_that_cannot_start(tmp_path: Path, backend: str, missing: str) -> None:
    """The real worker process started with this interpreter (no TPU-MLIR, no sail): one
    line naming the missing module and the worker's log."""
    bmodel = tmp_path / "model.bmodel"
    bmodel.write_bytes(b"\0")
    with pytest.raises(UserError) as e:
        WorkerRunner(bmodel, Path(sys.executable), {}, backend=backend)
    msg = str(e.value)
    assert f"No module named '{missing}'" in msg and "\n" not in msg and "log: " in msg
    log = Path(msg.rsplit("log: ", 1)[1])
    assert log.is_file()  # kept for the user because the worker failed; removed here
    log.unlink()
