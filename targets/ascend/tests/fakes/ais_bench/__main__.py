"""Stand-in for ``python -m ais_bench`` in pure-inference mode: checks the arguments like
ais_bench's set_session_options (a dynamic-batch .om needs --dymBatch with a compiled value, a
dynamic-dims .om needs --dymDims matching a gear), prints the Performance Summary in the
current ais_bench format and writes ``<output>/<output_dirname>_summary.json`` with the keys
ais_bench's summary.py writes.

FAKE_AIS_CLI_MODE = ok (default) | legacy (the oldest ais_infer console format, no JSON) |
fail (traceback + exit 1). FAKE_AIS_MS_PER_IMAGE sets the simulated device time (default 0.5).
FAKE_AIS_CALLS names a JSON-lines file each call is appended to.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

import ascend_fakeom as fom


def percentile(values: list[float], q: float) -> float:
    """numpy's default (linear) percentile, without importing numpy (fast start-up)."""
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def str2bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes"):
        return True
    if v.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"bad bool {v}")


def main() -> int:
    fom.log_call("FAKE_AIS_CALLS", sys.argv[1:])
    p = argparse.ArgumentParser("ais_bench")
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--input", default=None)
    p.add_argument("--output", default=None)
    p.add_argument("--output_dirname", default=None)
    p.add_argument("--loop", type=int, default=1)
    p.add_argument("--batchsize", type=int, default=None)
    p.add_argument("--device", default="0")
    p.add_argument("--warmup_count", type=int, default=1)
    p.add_argument("--display_all_summary", type=str2bool, default=False)
    p.add_argument("--dymBatch", type=int, default=0)
    p.add_argument("--dymDims", default=None)
    args = p.parse_args()
    mode = os.environ.get("FAKE_AIS_CLI_MODE", "ok")
    if mode == "fail":
        print("[ERROR] load model failed: aclmdlLoadFromFile ret 507011")
        print("RuntimeError: [ERROR] load model failed")
        return 1
    header, _ = fom.read_om(args.model)
    device = int(args.device)
    if not 0 <= device < int(os.environ.get("FAKE_NPU_DEVICES", "2")):
        raise RuntimeError(f"aclrtSetDevice failed: device_id {device}")
    name, dims = fom.parse_shape(header["input_shape"])
    if header.get("dynamic_batch_size"):
        if args.dymBatch == 0:
            raise RuntimeError("dynamic batch om model detected, but dymbatch, dymdims or dymshape not set!")
        if args.dymBatch not in header["dynamic_batch_size"]:
            raise RuntimeError(f"dymBatch {args.dymBatch} is not a compiled gear")
        dims = [args.dymBatch, *dims[1:]]
    elif header.get("dynamic_dims"):
        if not args.dymDims:
            raise RuntimeError("dynamic dims om model detected, but dymdims not set!")
        dname, ddims = fom.parse_shape(args.dymDims)
        free = [ddims[i] for i, d in enumerate(dims) if d == -1]
        if dname != name or free not in header["dynamic_dims"]:
            raise RuntimeError(f"--dymDims {args.dymDims} matches no gear")
        dims = ddims
    elif args.dymBatch or args.dymDims:
        raise RuntimeError("static model given a dynamic option")
    batch = args.batchsize if args.batchsize is not None else dims[0]
    per_image = float(os.environ.get("FAKE_AIS_MS_PER_IMAGE", "0.5"))
    rng = random.Random(args.loop + dims[0])
    times = [0.2 + per_image * dims[0] * (1 + 0.02 * rng.gauss(0, 1)) for _ in range(args.loop)]
    h2d = [0.05 * dims[0]] * args.loop
    d2h = [0.01 * dims[0]] * args.loop

    def stats(v: list[float]) -> dict:
        return {"min": min(v), "max": max(v), "mean": sum(v) / len(v), "median": percentile(v, 50),
                "percentile(99%)": percentile(v, 99), "count": len(v)}

    npu = stats(times)
    throughput = 1000 * batch / npu["mean"]
    print("[INFO] acl init success")
    print(f"[INFO] open device {device} success")
    print(f"[INFO] load model {args.model} success")
    print("[INFO] create model description success")
    if args.batchsize is None:
        print(f"[INFO] try get model batchsize:{batch}")
    print(f"[INFO] warm up {args.warmup_count} done")
    print("[INFO] -----------------Performance Summary------------------")

    def line(label: str, s: dict) -> str:
        return (f"[INFO] {label} (ms): min = {s['min']}, max = {s['max']}, mean = {s['mean']}, "
                f"median = {s['median']}, percentile(99%) = {s['percentile(99%)']}")

    if mode == "legacy":
        print(line("NPU_compute_time", npu))
        print(f"[INFO] throughput (1000*batchsize/NPU_compute_time): {throughput}")
        print("[INFO] ------------------------------------------------------")
        return 0
    if args.display_all_summary:
        print(line("H2D_latency", stats(h2d)))
    print(line("NPU_compute_time", npu))
    if args.display_all_summary:
        print(line("D2H_latency", stats(d2h)))
    print(f"[INFO] throughput 1000*batchsize.mean({batch})/NPU_compute_time.mean({npu['mean']}): {throughput}")
    print("[INFO] ------------------------------------------------------")
    if args.output:
        prefix = os.path.join(args.output, args.output_dirname or "2024_01_01-00_00_00")
        os.makedirs(prefix, exist_ok=True)
        info = {"filesinfo": {}, "args": sys.argv, "NPU_compute_time": npu, "H2D_latency": stats(h2d),
                "D2H_latency": stats(d2h), "npu_compute_time_list": times, "throughput": throughput,
                "pid": os.getpid()}
        with open(prefix + "_summary.json", "w") as f:
            json.dump(info, f)
    print("[INFO] end to finalize acl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
