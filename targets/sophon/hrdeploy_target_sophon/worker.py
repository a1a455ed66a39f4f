"""A long-lived process that loads one bmodel and runs batches sent over a pipe.

hrdeploy runs in the project's Python (3.11) while TPU-MLIR's cmodel runtime only exists in
the toolchain's Python 3.10 environment, so the runner starts this file there once::

    <toolchain python> worker.py --backend cmodel --bmodel model.bmodel

and exchanges length-prefixed messages on stdin/stdout. The bmodel is loaded once; each
request carries one or more batches. ``--backend sail`` serves a Sophon device the same way
when sophon.sail is installed only in another interpreter.

This module must stay importable without hrdeploy (it runs in the toolchain environment):
numpy and the standard library only at module level. The in-process sail runner imports
:class:`SailBackend` and the framing functions from here too.

Wire format, both directions: ``b"HRDW"``, uint32 little-endian length of a JSON header,
the header, then the raw C-order bytes of each array the header's ``arrays`` list describes
(``{"dtype": "<f4", "shape": [...]}``). Requests: ``{"op": "run", "batches": k}`` with
k x (inputs per batch) arrays, ``{"op": "close"}``. Replies: ``{"ok": true, "seconds": [...]}``
with k x (outputs per batch) arrays, or ``{"ok": false, "error": "one line"}``. On start the
worker sends a hello reply describing the model (or the error that stopped it loading).

The native runtime prints to stdout; the worker moves its own fd 1 to stderr (a log file on
the client side) and keeps a private duplicate of the original stdout for the protocol.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import struct
import subprocess
import sys
import time
from typing import IO, Any, Sequence

import numpy as np

MAGIC = b"HRDW"
HEADER = struct.Struct("<4sI")
REEXEC_FLAG = "HRDEPLOY_SOPHON_WORKER_STAGE2"
#: TPU-MLIR switches the libcmodel.so symlink inside its package under this lock
CMODEL_SO_LOCK = "/tmp/cmodel_so.lock"


# -- framing ---------------------------------------------------------------------------------

def write_message(fh: IO[bytes], meta: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
    arrays = [np.require(a, requirements="C") for a in arrays]  # keeps 0-d arrays 0-d
    head = dict(meta)
    head["arrays"] = [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]
    data = json.dumps(head).encode("utf-8")
    fh.write(HEADER.pack(MAGIC, len(data)))
    fh.write(data)
    for a in arrays:
        fh.write(a.reshape(-1).view(np.uint8))  # no copy; any dtype, 0-d and empty arrays
    fh.flush()


def _read_exact(fh: IO[bytes], n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    pos = 0
    while pos < n:
        got = fh.readinto(view[pos:])  # type: ignore[attr-defined]
        if not got:
            raise EOFError(f"pipe closed after {pos} of {n} bytes")
        pos += got
    return buf


def read_message(fh: IO[bytes]) -> tuple[dict[str, Any], list[np.ndarray]]:
    magic, size = HEADER.unpack(bytes(_read_exact(fh, HEADER.size)))
    if magic != MAGIC:
        raise ValueError(f"bad message start {magic!r}: the other side wrote something else on the pipe")
    meta = json.loads(bytes(_read_exact(fh, size)).decode("utf-8"))
    arrays = []
    for d in meta.pop("arrays", []):
        dtype, shape = np.dtype(d["dtype"]), tuple(int(v) for v in d["shape"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        arrays.append(np.frombuffer(_read_exact(fh, count * dtype.itemsize), dtype).reshape(shape))
    return meta, arrays


# -- backends --------------------------------------------------------------------------------

class CmodelBackend:
    """TPU-MLIR's pyruntime on the cmodel (functional simulator). Mirrors
    ``model_runner._model_inference`` from tpu_mlir 1.30.2 but keeps the model loaded and
    writes no side files next to the bmodel."""

    kind = "cmodel"

    def __init__(self, bmodel: str) -> None:
        import tpu_mlir  # noqa: F401  (sets TPUC_ROOT, PATH and sys.path)
        from filelock import FileLock
        from tpu_mlir.python.tools import model_runner as mr
        from tpu_mlir.python.utils.lowering import bf16_to_fp32, lowering

        self._lowering, self._bf16 = lowering, bf16_to_fp32
        self.chip = _model_tool(["--chip", bmodel]).strip()
        is_rvti = _model_tool(["--kernel_mode", bmodel]).strip() == "1"
        module = "pyruntime_tpuv7" if self.chip in ("BM1690", "SG2262", "BM1690E") else "pyruntime_bm"
        with FileLock(CMODEL_SO_LOCK):
            mr.link_cmodel_so(self.chip, is_rvti)
            mr.link_custom_so(self.chip)
            mr.link_bmlib_so(self.chip)
            runtime = importlib.import_module(module)
            mr.bind_cmodel_so(self.chip, is_rvti)
        self.model = runtime.Model(bmodel, 0, "")
        self.net = self.model.Net(self.model.networks[0])
        self.label = f"simulator (cmodel) TPU-MLIR {_tpu_mlir_version()}, {self.chip.lower()}"

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "label": self.label, "chip": self.chip.lower(), "net": self.net.name,
                "inputs": [{"name": t.name, "shape": list(t.data.shape), "dtype": t.dtype} for t in self.net.inputs],
                "outputs": [{"name": t.name, "shape": list(t.data.shape), "dtype": t.dtype} for t in self.net.outputs]}

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self.net.inputs):
            raise ValueError(f"the model takes {len(self.net.inputs)} inputs, got {len(inputs)}")
        shapes = []
        for t, x in zip(self.net.inputs, inputs):
            flat = t.data.reshape(-1)
            if x.size > flat.size:
                raise ValueError(f"input {t.name} of shape {list(x.shape)} exceeds the largest compiled "
                                 f"shape {list(t.data.shape)}")
            # the buffer has the first stage's (largest) shape; a smaller stage uses its head
            flat[:x.size] = self._lowering(x, pdtype=t.dtype, pshape=x.shape, pzero_point=t.qzero_point,
                                           pscale=t.qscale).flatten()
            shapes.append([int(v) for v in x.shape])
        out_shapes = self.net.forward_dynamic(shapes)
        outs = []
        for t, shape in zip(self.net.outputs, out_shapes):
            data = t.data
            if data.dtype in (np.int8, np.uint8) and t.qscale != 0:
                y = (data.astype(np.float32) - t.qzero_point) * np.float32(t.qscale)
            elif t.dtype == "bf16":
                y = self._bf16(data)
            else:
                y = data.astype(np.float32)  # a copy: the buffer is reused by the next call
            n = int(np.prod(shape))
            outs.append(np.ascontiguousarray(y.reshape(-1)[:n].reshape(shape), dtype=np.float32))
        return outs


class SailBackend:
    """A Sophon device through sophon.sail (``Engine(path, dev, IOMode.SYSIO)``: inputs and
    outputs in host memory as numpy arrays). Static multi-stage bmodels pick the stage from
    the input shape. Written against the sail documentation; there is no device here."""

    kind = "sail"

    def __init__(self, bmodel: str, device: int) -> None:
        import sophon.sail as sail

        self.sail = sail
        self.device = device
        self.engine = sail.Engine(bmodel, device, sail.IOMode.SYSIO)
        self.graph = self.engine.get_graph_names()[0]
        self.input_names = list(self.engine.get_input_names(self.graph))
        self.output_names = list(self.engine.get_output_names(self.graph))
        self.input_dtypes = {n: self.engine.get_input_dtype(self.graph, n) for n in self.input_names}
        self.input_scales = {n: float(self.engine.get_input_scale(self.graph, n)) for n in self.input_names}
        self.output_scales = {}
        for n in self.output_names:
            try:
                self.output_scales[n] = float(self.engine.get_output_scale(self.graph, n))
            except Exception:  # older sail builds lack get_output_scale; float outputs need none
                self.output_scales[n] = 1.0
        version = getattr(sail, "__version__", None) or "sail"
        self.label = f"sophon.sail {version}, device {device}"

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "label": self.label, "net": self.graph,
                "inputs": [{"name": n, "shape": list(self.engine.get_input_shape(self.graph, n)),
                            "dtype": str(self.input_dtypes[n])} for n in self.input_names],
                "outputs": [{"name": n, "shape": list(self.engine.get_output_shape(self.graph, n)),
                             "dtype": ""} for n in self.output_names]}

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        sail = self.sail
        feeds = {}
        for name, x in zip(self.input_names, inputs):
            dt = self.input_dtypes[name]
            if dt == sail.Dtype.BM_INT8 and x.dtype != np.int8:
                x = np.clip(np.round(x * self.input_scales[name]), -128, 127).astype(np.int8)
            elif dt == sail.Dtype.BM_UINT8 and x.dtype != np.uint8:
                x = np.clip(np.round(x * self.input_scales[name]), 0, 255).astype(np.uint8)
            else:
                x = x.astype(np.float32, copy=False)
            feeds[name] = np.ascontiguousarray(x)
        out = self.engine.process(self.graph, feeds)
        result = []
        for name in self.output_names:
            y = np.asarray(out[name])
            if y.dtype in (np.int8, np.uint8):
                y = y.astype(np.float32) * np.float32(self.output_scales[name])
            result.append(np.ascontiguousarray(y, dtype=np.float32))
        return result


def _model_tool(args: list[str]) -> str:
    return subprocess.run(["model_tool", *args], capture_output=True, text=True, check=True).stdout


def _tpu_mlir_version() -> str:
    try:
        import importlib.metadata as md
        return md.version("tpu_mlir")
    except Exception:
        return "?"


# -- the serving loop ------------------------------------------------------------------------

def serve(backend: Any, fin: IO[bytes], fout: IO[bytes]) -> None:
    n_in = len(backend.describe()["inputs"])
    while True:
        try:
            meta, arrays = read_message(fin)
        except EOFError:
            return
        op = meta.get("op")
        if op == "close":
            write_message(fout, {"ok": True})
            return
        if op != "run":
            write_message(fout, {"ok": False, "error": f"unknown request {op!r}"})
            continue
        try:
            k = int(meta.get("batches", 1))
            if len(arrays) != k * n_in:
                raise ValueError(f"expected {k * n_in} arrays for {k} batches, got {len(arrays)}")
            outs: list[np.ndarray] = []
            seconds = []
            for i in range(k):
                t0 = time.perf_counter()
                outs.extend(backend.run(arrays[i * n_in:(i + 1) * n_in]))
                seconds.append(time.perf_counter() - t0)
            write_message(fout, {"ok": True, "seconds": seconds}, outs)
        except Exception as e:  # reported to the client as one line; the worker keeps serving
            print(f"request failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            write_message(fout, {"ok": False, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--backend", choices=("cmodel", "sail"), required=True)
    ap.add_argument("--bmodel", required=True)
    ap.add_argument("--device", type=int, default=0)
    args = ap.parse_args(argv)

    if args.backend == "cmodel" and os.environ.get(REEXEC_FLAG) != "1":
        # tpu_mlir's import sets LD_LIBRARY_PATH for its native runtime, which only a new
        # process sees (TPU-MLIR's own entry points do the same with a child process)
        saved = os.dup(1)
        os.dup2(2, 1)  # anything printed while importing must not reach the protocol pipe
        try:
            import tpu_mlir  # noqa: F401
        except Exception as e:  # not the toolchain's interpreter, or a broken install
            with os.fdopen(saved, "wb") as out:
                write_message(out, {"ok": False, "error": f"cannot start: {type(e).__name__}: "
                                                          f"{' '.join(str(e).split())[:300]}"})
            return 1
        os.dup2(saved, 1)
        os.close(saved)
        os.environ[REEXEC_FLAG] = "1"
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]])

    fout = os.fdopen(os.dup(1), "wb", buffering=1 << 20)
    fin = os.fdopen(os.dup(0), "rb", buffering=1 << 20)
    os.dup2(2, 1)  # native runtime output goes to stderr from here on
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sys.stdout = sys.stderr
    try:
        backend = CmodelBackend(args.bmodel) if args.backend == "cmodel" else SailBackend(args.bmodel, args.device)
        hello = backend.describe()
    except Exception as e:
        write_message(fout, {"ok": False, "error": f"cannot load {args.bmodel}: {type(e).__name__}: "
                                                   f"{' '.join(str(e).split())[:300]}"})
        return 1
    write_message(fout, {"ok": True, "op": "hello", **hello})
    serve(backend, fin, fout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
