"""Runs a compiled .om through ais_bench's Python API (``InferSession``).

Traps handled here: feeds are a *list* in input order, not a dict; the
dynamic-mode names differ between builds (``dymbatch`` in the code, ``dynbatch`` in some docs),
so they are read from ``session.infer_mode_switch`` when it exists and retried on "wrong
infer_mode" otherwise; in a dynamic mode the array shape selects the gear, so a batch is padded
up to a compiled batch size and an (H, W) must be a compiled gear; timings come from
``summary()`` (``sumary()`` on older builds) whose ``exec_time_list`` holds ms per call or
(start, end) pairs.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.kit.normalise import Normalisation
from hrdeploy.target import Runner

from .commands import SET_ENV

RUNTIME_HINT = ("install the ais_bench and aclruntime wheels (msit install benchmark, or "
                f"Ascend/tools ais-bench_workload) and {SET_ENV}")
MODE_ALIASES: dict[str, tuple[str, ...]] = {
    "static": ("static",),
    "dymbatch": ("dymbatch", "dynbatch"),
    "dymdims": ("dymdims", "dyndims"),
    "dymhw": ("dymhw", "dynhw"),
}
_DYNAMIC_TO_MODE = {None: "static", "batch": "dymbatch", "dims": "dymdims", "hw": "dymhw"}

# ACL is initialised once per process; finalize() tears it down for everyone, so only the
# last runner to close calls it
_open_lock = threading.Lock()
_open_runners = 0


def import_infer_session() -> Any:
    try:
        from ais_bench.infer.interface import InferSession
    except ImportError as e:
        raise ToolchainMissing(f"ais_bench is not importable here ({e})", RUNTIME_HINT) from None
    return InferSession


def exec_times_ms(summary: Any) -> list[float]:
    """Per-call device times in ms from ``session.summary()``: floats, or (start, end) pairs
    in newer aclruntime builds."""
    out: list[float] = []
    for v in list(getattr(summary, "exec_time_list", None) or []):
        if isinstance(v, (tuple, list)) and len(v) == 2:
            out.append(float(v[1]) - float(v[0]))
        else:
            out.append(float(v))
    return out


class AscendRunner(Runner):
    """One device, one .om (or one .om per batch size for ``batch_mode=static`` artifacts)."""

    def __init__(self, om_by_batch: dict[int | None, Path], device_id: int, *, dynamic: str | None,
                 input_name: str, output_names: Sequence[str], batch_sizes: Sequence[int] | None,
                 sizes: Sequence[tuple[int, int]] | None, aipp: Normalisation | None = None,
                 soc: str = "", session_factory: Callable[..., Any] | None = None) -> None:
        global _open_runners
        self._factory = session_factory or import_infer_session()
        self.om_by_batch = dict(om_by_batch)
        self.device_id = int(device_id)
        self.dynamic = dynamic
        self.input_name = input_name
        self.batch_sizes = tuple(sorted(int(b) for b in batch_sizes)) if batch_sizes else None
        self.sizes = tuple(tuple(int(v) for v in s) for s in sizes) if sizes else None  # type: ignore[misc]
        self.aipp = aipp
        self._sessions: dict[int | None, Any] = {}
        self._modes: dict[int | None, str] = {}
        self._closed = False
        # open the first session now: a wrong device id or a broken .om fails at open()
        first = next(iter(self.om_by_batch))
        session = self._session(first)
        with _open_lock:
            _open_runners += 1
        names = [str(getattr(d, "name", f"output{i}")).split(":")[0]
                 for i, d in enumerate(session.get_outputs())]
        self.output_names = list(output_names) if output_names and len(output_names) == len(names) else names
        files = ", ".join(p.name for p in self.om_by_batch.values())
        self.label = (f"ais_bench InferSession, {soc or 'Ascend'} device {self.device_id} ({files}; "
                      f"{self._modes[first]}{', AIPP uint8 input' if aipp else ''})")

    # -- sessions --------------------------------------------------------------------------------
    def _session(self, key: int | None) -> Any:
        if key not in self._sessions:
            path = self.om_by_batch[key]
            if not path.is_file():
                raise UserError(f"compiled model missing: {path}", "convert again (or --from-plan)")
            try:
                session = self._factory(self.device_id, str(path))
            except (RuntimeError, ValueError) as e:
                raise UserError(f"ais_bench could not load {path.name} on device {self.device_id}: {e}",
                                "check the device id against the Device column of npu-smi info") from None
            self._sessions[key] = session
            self._modes[key] = self._mode_name(session, _DYNAMIC_TO_MODE.get(self.dynamic, "static"))
        return self._sessions[key]

    @staticmethod
    def _mode_name(session: Any, wanted: str) -> str:
        switch = getattr(session, "infer_mode_switch", None)
        if isinstance(switch, dict):
            for cand in MODE_ALIASES[wanted]:
                if cand in switch:
                    return cand
            raise UserError(f"this ais_bench offers infer modes {sorted(switch)}, none for {wanted!r}",
                            "update ais_bench")
        return wanted

    def _key_for(self, batch: int) -> int | None:
        if None in self.om_by_batch:
            return None
        return batch

    # -- running -------------------------------------------------------------------------------
    def _target_batch(self, n: int) -> int:
        if not self.batch_sizes:
            return n
        larger = [b for b in self.batch_sizes if b >= n]
        return min(larger) if larger else max(self.batch_sizes)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = self.input_array(feeds)  # float32, or uint8 pixels for an AIPP model: kept as given
        hw = (int(x.shape[2]), int(x.shape[3]))
        if self.sizes is not None and hw not in self.sizes:
            raise UserError(f"input size {hw[0]}x{hw[1]} is not a compiled gear of this .om "
                            f"({', '.join(f'{h}x{w}' for h, w in self.sizes)})",
                            "the pipeline must snap images to the artifact's gears")
        n = int(x.shape[0])
        target = self._target_batch(n)
        if target < n:  # more than the largest compiled batch: split
            parts = [self.run({self.input_name: x[i:i + target]}) for i in range(0, n, target)]
            return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
        if target > n:  # a gear needs its exact batch: repeat the last input, drop its outputs
            x = np.concatenate([x, np.repeat(x[-1:], target - n, axis=0)])
        feed = self.aipp.to_uint8_nhwc(x) if self.aipp else np.ascontiguousarray(x, dtype=np.float32)
        key = self._key_for(target)
        if key not in self.om_by_batch:
            raise UserError(f"batch {target} was not compiled into this artifact",
                            f"compiled: {', '.join(str(k) for k in self.om_by_batch)}")
        session = self._session(key)
        outs = self._infer(session, key, feed)
        return [np.asarray(o, dtype=np.float32)[:n] for o in outs]

    def _infer(self, session: Any, key: int | None, feed: np.ndarray) -> list[Any]:
        mode = self._modes[key]
        try:
            return list(session.infer([feed], mode=mode, out_array=True))
        except RuntimeError as e:
            # older builds without infer_mode_switch: try the other spelling once
            if "infer_mode" not in str(e):
                raise UserError(f"ais_bench inference failed: {e}") from None
            wanted = next(k for k, v in MODE_ALIASES.items() if mode in v)
            others = [m for m in MODE_ALIASES[wanted] if m != mode]
            if not others:
                raise UserError(f"ais_bench rejected infer mode {mode!r}: {e}") from None
            self._modes[key] = others[0]
            return list(session.infer([feed], mode=others[0], out_array=True))

    def device_times_ms(self) -> list[float] | None:
        times: list[float] = []
        for session in self._sessions.values():
            fn = getattr(session, "summary", None) or getattr(session, "sumary", None)
            if fn is None:
                return None
            times += exec_times_ms(fn())
        return times

    def close(self) -> None:
        global _open_runners
        if self._closed:
            return
        self._closed = True
        for session in self._sessions.values():
            free = getattr(session, "free_resource", None)
            if free is not None:
                free()
        last = False
        with _open_lock:
            _open_runners -= 1
            last = _open_runners == 0
        if last and self._sessions:
            fin = getattr(type(next(iter(self._sessions.values()))), "finalize", None)
            if fin is not None:
                fin()
        self._sessions.clear()
