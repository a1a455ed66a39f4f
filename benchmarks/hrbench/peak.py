"""The machine's measured arithmetic peak at the benchmark's thread count.

fp32: a large single-precision matrix product, both through numpy (OpenBLAS sgemm; its thread
count is fixed by OPENBLAS_NUM_THREADS before numpy is imported, see run.py) and through an
ONNX Runtime MatMul (MLAS sgemm) with the same intra-op thread count; the higher of the two.
int8: ONNX Runtime MatMulInteger (uint8 x int8 -> int32) and QLinearMatMul (uint8 x int8 ->
uint8), the kernels MLAS uses for quantised Conv/MatMul; the higher of the two. Each is timed
for a fixed wall time after a warm-up run and reported as the best of three windows, so a
moment of contention on a shared machine does not lower the peak.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def _best_rate(fn: Callable[[], Any], ops: float, seconds: float) -> float:
    fn()
    best = 0.0
    for _ in range(3):
        n = 0
        t0 = time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= seconds / 3 and n >= 2:
                break
        best = max(best, ops * n / dt)
    return best


def _ort_session(model: Any, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])


def _matmul_model(kind: str, n: int) -> tuple[Any, dict[str, np.ndarray]]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "fp32":
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "b")
        nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
        inits, a_type, y_type = [b], TensorProto.FLOAT, TensorProto.FLOAT
    else:
        a = rng.integers(0, 256, (n, n), dtype=np.uint8)
        b = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "b")
        a_type = TensorProto.UINT8
        if kind == "MatMulInteger":
            nodes = [helper.make_node("MatMulInteger", ["a", "b"], ["y"])]
            inits, y_type = [b], TensorProto.INT32
        else:  # QLinearMatMul: scales and zero points as the quantiser writes them
            inits = [b] + [numpy_helper.from_array(np.array(v, dt), name) for name, v, dt in (
                ("a_s", 0.02, np.float32), ("a_z", 128, np.uint8), ("b_s", 0.01, np.float32),
                ("b_z", 0, np.int8), ("y_s", 5.0, np.float32), ("y_z", 128, np.uint8))]
            nodes = [helper.make_node("QLinearMatMul", ["a", "a_s", "a_z", "b", "b_s", "b_z", "y_s", "y_z"], ["y"])]
            y_type = TensorProto.UINT8
    graph = helper.make_graph(nodes, "peak", [helper.make_tensor_value_info("a", a_type, [n, n])],
                              [helper.make_tensor_value_info("y", y_type, [n, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model, {"a": a}


def measure_peak(threads: int, seconds: float = 3.0, n: int = 2048) -> dict[str, Any]:
    """``{"fp32_gflops", "int8_gops", "detail": {...}, "method": text}`` for ``threads`` threads."""
    ops = 2.0 * n ** 3 / 1e9
    detail: dict[str, float] = {}
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    detail["numpy_sgemm_gflops"] = _best_rate(lambda: np.matmul(a, b, out=out), ops, seconds)
    for kind, key in (("fp32", "ort_matmul_fp32_gflops"), ("MatMulInteger", "ort_matmulinteger_gops"),
                      ("QLinearMatMul", "ort_qlinearmatmul_gops")):
        model, feeds = _matmul_model(kind, n)
        sess = _ort_session(model, threads)
        detail[key] = _best_rate(lambda: sess.run(None, feeds), ops, seconds)
        del sess
    fp32 = max(detail["numpy_sgemm_gflops"], detail["ort_matmul_fp32_gflops"])
    int8 = max(detail["ort_matmulinteger_gops"], detail["ort_qlinearmatmul_gops"])
    return {
        "fp32_gflops": round(fp32, 2), "int8_gops": round(int8, 2),
        "detail": {k: round(v, 2) for k, v in detail.items()}, "threads": threads, "matrix": n,
        "method": (f"{n}x{n}x{n} products, 2*n^3 operations per call, best of 3 windows of {seconds / 3:.1f} s "
                   f"at {threads} threads: fp32 = max(numpy/OpenBLAS sgemm, ONNX Runtime MatMul); "
                   "int8 = max(ONNX Runtime MatMulInteger u8s8->s32, QLinearMatMul u8s8->u8)"),
    }
