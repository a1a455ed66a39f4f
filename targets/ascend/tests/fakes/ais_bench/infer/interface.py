"""Stand-in for ais_bench.infer.interface: the InferSession API (list feeds, infer modes
checked like the real _dymbatch_prepare/_dymdims_prepare, summary timings).

FAKE_AIS_OLD=1 mimics an old build: no infer_mode_switch attribute, ``sumary()`` only.
FAKE_AIS_SPELLING=dyn spells the dynamic modes dynbatch/dyndims (a build that follows the docs).
FAKE_AIS_PAIRS=1 makes exec_time_list hold (start, end) pairs like newer aclruntime builds.
FAKE_NPU_DEVICES (default 2) is the number of devices.
"""
from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np

import ascend_fakeom as fom

FINALIZED = [0]


class _Desc(SimpleNamespace):
    pass


class InferSession:
    def __init__(self, device_id: int, model_path: str, acl_json_path: str | None = None,
                 debug: bool = False, loop: int = 1) -> None:
        ndev = int(os.environ.get("FAKE_NPU_DEVICES", "2"))
        if not isinstance(device_id, int) or not 0 <= device_id < ndev:
            raise RuntimeError(f"aclrtSetDevice failed: device_id {device_id} is invalid")
        self.device_id = device_id
        self.header, onnx_bytes = fom.read_om(model_path)
        self._ort = fom.ort_session(onnx_bytes)
        self._times: list = []
        self.freed = False
        if os.environ.get("FAKE_AIS_OLD") != "1":
            dyn = os.environ.get("FAKE_AIS_SPELLING") == "dyn"
            self.infer_mode_switch = {"static": None, ("dynbatch" if dyn else "dymbatch"): None,
                                      "dymhw": None, ("dyndims" if dyn else "dymdims"): None, "dymshape": None}
            self.summary = self._summary
        else:
            self.sumary = self._summary

    def _modes(self) -> set[str]:
        sw = getattr(self, "infer_mode_switch", None)
        return set(sw) if sw is not None else {"static", "dymbatch", "dymhw", "dymdims", "dymshape"}

    def get_inputs(self) -> list:
        name, dims = fom.parse_shape(self.header["input_shape"])
        if self.header.get("aipp"):
            n, c, h, w = dims
            return [_Desc(name=name, shape=[n, h, w, c], datatype="uint8", format=1)]
        return [_Desc(name=name, shape=dims, datatype="float32", format=0)]

    def get_outputs(self) -> list:
        return [_Desc(name=o.name, shape=[-1], datatype="float32") for o in self._ort.get_outputs()]

    def _check(self, x: np.ndarray, mode: str) -> None:
        desc = self.get_inputs()[0].shape
        shape = list(x.shape)
        if len(shape) != len(desc):
            raise RuntimeError("input datas and intensors dim not matched!")
        canon = {"dynbatch": "dymbatch", "dyndims": "dymdims"}.get(mode, mode)
        if self.header.get("dynamic_batch_size"):
            if canon != "dymbatch":
                raise RuntimeError("dynamic batch om model detected, but dymbatch not set!")
            if shape[0] not in self.header["dynamic_batch_size"]:
                raise RuntimeError(f"batch {shape[0]} is not one of the compiled gears "
                                   f"{self.header['dynamic_batch_size']}")
            if shape[1:] != desc[1:]:
                raise RuntimeError("input datas and intensors dim not matched!")
        elif self.header.get("dynamic_dims"):
            if canon != "dymdims":
                raise RuntimeError("dynamic dims om model detected, but dymdims not set!")
            free = [shape[i] for i, d in enumerate(desc) if d == -1]
            fixed_ok = all(d == -1 or d == s for d, s in zip(desc, shape))
            if not fixed_ok or free not in self.header["dynamic_dims"]:
                raise RuntimeError(f"set_dynamic_dims failed: {shape} matches no gear of {self.header['dynamic_dims']}")
        else:
            if canon != "static":
                raise RuntimeError(f"not a {canon} model!")
            if shape != desc:
                raise RuntimeError("input datas and intensors dim not matched!")

    def infer(self, feeds, mode: str = "static", custom_sizes=100000, out_array: bool = True):
        if not isinstance(feeds, list) or not feeds:
            raise RuntimeError("feeds must be a non-empty list")
        if mode not in self._modes():
            raise RuntimeError(f'wrong infer_mode:{mode}, only support "static","dymbatch","dymhw", "dymdims","dymshape"')
        x = feeds[0]
        if not isinstance(x, np.ndarray):
            raise RuntimeError(f"type:{type(x)} invalid")
        if self.header.get("aipp"):
            if x.dtype != np.uint8:
                raise RuntimeError(f"AIPP input expects uint8, got {x.dtype}")
        elif x.dtype != np.float32:
            raise RuntimeError(f"input expects float32, got {x.dtype}")
        self._check(x, mode)
        t0 = time.perf_counter()
        data = fom.aipp_to_nchw(x, self.header["aipp"]) if self.header.get("aipp") else x
        name = self._ort.get_inputs()[0].name
        outs = self._ort.run(None, {name: data})
        ms = (time.perf_counter() - t0) * 1000.0
        if os.environ.get("FAKE_AIS_PAIRS") == "1":
            start = len(self._times) * 10.0
            self._times.append((start, start + ms))
        else:
            self._times.append(ms)
        return [np.asarray(o) for o in outs]

    def _summary(self):
        return SimpleNamespace(exec_time_list=list(self._times))

    def free_resource(self) -> None:
        self.freed = True

    @staticmethod
    def finalize() -> None:
        FINALIZED[0] += 1

