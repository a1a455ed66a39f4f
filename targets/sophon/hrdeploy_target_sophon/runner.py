"""Runners for bmodels: a Sophon device through sophon.sail, or the cmodel simulator.

Both backends live in :mod:`.worker`. sail in this interpreter runs in-process
(:class:`SailRunner`); the cmodel (and sail installed only in the toolchain's Python) runs in
one long-lived worker process that keeps the bmodel loaded (:class:`WorkerRunner`).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from hrdeploy.errors import UserError
from hrdeploy.target import Runner

from . import worker as _worker

WORKER = Path(_worker.__file__).resolve()


def _tail(path: Path, n: int = 400) -> str:
    """The last meaningful line of a worker log, for one-line errors."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    skip = ("BMLIB Send Quit Message", "cmodel_deinit complete")
    for ln in reversed(lines):
        if not ln.startswith(skip):
            return ln[:n]
    return ""


class _StaticShapes:
    """Shape checks shared by both runners: a static bmodel takes only its compiled stages."""

    batch_sizes: tuple[int, ...] | None
    sizes: tuple[tuple[int, int], ...] | None
    input_name: str

    def _check(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        x = self.input_array(feeds, np.float32)
        if self.batch_sizes and x.shape[0] not in self.batch_sizes:
            raise UserError(f"batch {x.shape[0]} was not compiled into this bmodel (its batch sizes: "
                            f"{', '.join(map(str, self.batch_sizes))})", "pad the batch or convert with --batch")
        if self.sizes and tuple(x.shape[2:]) not in self.sizes:
            raise UserError(f"input size {x.shape[2]}x{x.shape[3]} was not compiled into this bmodel")
        return x


class WorkerRunner(_StaticShapes, Runner):
    """A bmodel served by ``worker.py`` in the toolchain's interpreter: one process for the
    runner's lifetime, one pipe round trip per :meth:`run` / :meth:`run_many` call."""

    def __init__(self, bmodel: Path, python: Path, env: dict[str, str], *, backend: str = "cmodel",
                 device: int = 0, input_name: str | None = None, output_names: Sequence[str] | None = None,
                 batch_sizes: Sequence[int] | None = None, sizes: Sequence[tuple[int, int]] | None = None) -> None:
        self.backend = backend
        self.simulated = backend == "cmodel"
        fd, log = tempfile.mkstemp(prefix=f"hrdeploy-sophon-{backend}-", suffix=".log")
        self.log_path = Path(log)
        self._cwd = tempfile.TemporaryDirectory(prefix="hrdeploy-sophon-")
        self._lock = threading.Lock()
        self._failed = False
        with os.fdopen(fd, "wb") as logfh:
            self.proc = subprocess.Popen(
                [str(python), "-u", str(WORKER), "--backend", backend, "--bmodel", str(Path(bmodel).resolve()),
                 "--device", str(device)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logfh,
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, cwd=self._cwd.name)
        try:
            hello, _ = self._receive(what="starting")
        except BaseException:
            self.close()
            raise
        self.info = hello
        model_inputs = [i["name"] for i in hello.get("inputs", [])]
        model_outputs = [o["name"] for o in hello.get("outputs", [])]
        if len(model_inputs) != 1:
            self.close()
            raise UserError(f"{bmodel} has {len(model_inputs)} inputs; hrdeploy models take one image tensor")
        self.input_name = input_name or model_inputs[0]
        # TPU-MLIR renames outputs (``logits_Gemm``, ``..._f32``); the order is the ONNX order
        self.output_names = list(output_names) if output_names and len(output_names) == len(model_outputs) \
            else model_outputs
        self.model_output_names = model_outputs
        self.batch_sizes = tuple(int(b) for b in batch_sizes) if batch_sizes else None
        self.sizes = tuple((int(h), int(w)) for h, w in sizes) if sizes else None
        self.label = hello.get("label", backend)
        self.chip = hello.get("chip")
        self.seconds: list[float] = []

    # -- protocol ---------------------------------------------------------------------------------
    def _receive(self, what: str = "running") -> tuple[dict[str, Any], list[np.ndarray]]:
        assert self.proc.stdout is not None
        try:
            meta, arrays = _worker.read_message(self.proc.stdout)
        except (EOFError, ValueError) as e:
            self._failed = True
            code = self.proc.poll()
            if code is None:
                self.proc.kill()
                code = self.proc.wait()
            raise UserError(f"the Sophon {self.backend} worker stopped while {what} (exit {code}): "
                            f"{_tail(self.log_path) or e}; log: {self.log_path}") from None
        if not meta.get("ok"):
            self._failed = True
            raise UserError(f"Sophon {self.backend} worker: {meta.get('error', 'unknown error')}; log: {self.log_path}")
        return meta, arrays

    def _call(self, batches: list[np.ndarray]) -> list[list[np.ndarray]]:
        if self.proc.poll() is not None:
            raise UserError(f"the Sophon {self.backend} worker is not running (exit {self.proc.returncode}); "
                            f"log: {self.log_path}")
        with self._lock:
            assert self.proc.stdin is not None
            try:
                _worker.write_message(self.proc.stdin, {"op": "run", "batches": len(batches)}, batches)
            except BrokenPipeError:
                self._failed = True
                raise UserError(f"the Sophon {self.backend} worker closed its input: {_tail(self.log_path)}; "
                                f"log: {self.log_path}") from None
            meta, arrays = self._receive()
        self.seconds.extend(float(s) for s in meta.get("seconds", []))
        n = len(self.model_output_names)
        return [arrays[i * n:(i + 1) * n] for i in range(len(batches))]

    # -- Runner -----------------------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._call([self._check(feeds)])[0]

    def run_many(self, batches: Sequence[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        if not batches:
            return []
        return self._call([self._check(b) for b in batches])

    def device_times_ms(self) -> list[float] | None:
        # the simulator's time is host time; a device worker's includes the pipe: neither is
        # the chip's compute time
        return None

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                _worker.write_message(proc.stdin, {"op": "close"})
                proc.wait(timeout=30)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        for f in (proc.stdin, proc.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        self.proc = None  # type: ignore[assignment]
        self._cwd.cleanup()
        if not self._failed:
            self.log_path.unlink(missing_ok=True)

    def __del__(self) -> None:  # a runner dropped without close() must not leave a process behind
        try:
            self.close()
        except Exception:
            pass


class SailRunner(_StaticShapes, Runner):
    """sophon.sail in this interpreter: no process boundary. Untested here (no device)."""

    simulated = False

    def __init__(self, bmodel: Path, device: int, *, input_name: str | None = None,
                 output_names: Sequence[str] | None = None, batch_sizes: Sequence[int] | None = None,
                 sizes: Sequence[tuple[int, int]] | None = None) -> None:
        try:
            self.backend = _worker.SailBackend(str(bmodel), device)
        except ImportError as e:
            raise UserError(f"sophon.sail is not importable: {e}",
                            "install the sophon wheel of your SDK for this Python (libsophon + sophon-opencv)") from None
        except Exception as e:  # sail raises RuntimeError-like errors for a bad file or device
            raise UserError(f"sophon.sail cannot load {bmodel} on device {device}: {' '.join(str(e).split())[:200]}") from None
        if len(self.backend.input_names) != 1:
            raise UserError(f"{bmodel} has {len(self.backend.input_names)} inputs; hrdeploy models take one image tensor")
        self.input_name = input_name or self.backend.input_names[0]
        names = self.backend.output_names
        self.output_names = list(output_names) if output_names and len(output_names) == len(names) else list(names)
        self.batch_sizes = tuple(int(b) for b in batch_sizes) if batch_sizes else None
        self.sizes = tuple((int(h), int(w)) for h, w in sizes) if sizes else None
        self.label = self.backend.label
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = self._check(feeds)
        with self._lock:
            return self.backend.run([x])
