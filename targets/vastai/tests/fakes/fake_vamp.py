"""Stand-in for ``vamp``: checks the model prefix, the vdsp_params JSON against the model's
input and the option syntax, then prints a report in the recorded vamp formats.

FAKE_VAMP_MODE = ok (vamp 2.1.0 format with percentiles) | old (2.x format: samples / forwad
time, no percentiles) | fail (exit 1). FAKE_VASTAI_CALLS names a JSON-lines call log.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import vastai_fakelib as lib


def parse(argv: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or i + 1 >= len(argv):
            raise SystemExit(f"vamp: bad argument {a!r}")
        opts[a.lstrip("-")] = argv[i + 1]
        i += 2
    return opts


def ints(text: str) -> list[int]:
    m = re.fullmatch(r"\[(\d+(?:,\d+)*)\]", text)
    if not m:
        raise SystemExit(f"vamp: expected [a,b,...], got {text!r}")
    return [int(v) for v in m.group(1).split(",")]


def main() -> int:
    argv = sys.argv[1:]
    lib.log_call(["vamp", *argv])
    mode = os.environ.get("FAKE_VAMP_MODE", "ok")
    if mode == "fail":
        print("vamp: failed to init graph: device 0 busy")
        return 1
    o = parse(argv)
    header, _ = lib.read_model(o["m"])
    vdsp = json.loads(Path(o["vdsp_params"]).read_text())
    cfg = vdsp["OpConfig"]
    assert vdsp["OpType"] == "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR", vdsp["OpType"]
    c, h, w = header["shape"][1:]
    if (cfg["OimageHeight"], cfg["OimageWidth"]) != (h, w):
        print(f"vamp: vdsp output {cfg['OimageHeight']}x{cfg['OimageWidth']} does not match the model input {h}x{w}")
        return 1
    if "s" in o and ints(o["s"]) != [c, h, w]:
        print(f"vamp: -s {o['s']} does not match the model input [{c},{h},{w}]")
        return 1
    inst, proc, batch = int(o["i"]), int(o["p"]), int(o["b"])
    if min(inst, proc, batch) < 1:
        print("vamp: -i, -p and -b must be positive")
        return 1
    iterations = int(o.get("iterations", "1024"))
    model_us = 200 + 150 * batch
    e2e_us = model_us * (1 + inst)
    qps = inst * batch * 1e6 / model_us
    print(f"model input shape 0: [{c},{h},{w}], dtype: u1")
    print("load model and init graph done")
    print(f"- number of instances in each device: {inst}")
    print(f"devices: [{o.get('d', '0')}]")
    if mode == "old":
        print(f"batch size: {batch}")
        print(f"samples: {iterations}")
        print(f"forwad time (s): {iterations / qps:.6g}")
        print(f"throughput (qps): {qps:.6g}")
        print("ai utilize (%): 96.3077")
        print("die memory used (MB): 883.234")
        print("e2e latency (us):")
        print(f"    avg latency: {e2e_us}\n    min latency: {model_us}\n    max latency: {e2e_us + 100}")
        print("model latency (us):")
        print(f"    avg latency: {model_us}\n    min latency: {model_us}\n    max latency: {model_us}")
        return 0
    print(f"batch size: {batch}")
    print("ai utilize (%): 94.9018")
    print("temperature (°C): 49.1461")
    print("card power (W): 31.4001")
    print("die memory used (MB): 1516.29")
    print(f"throughput (qps): {qps:.6g}")
    pcts = ints(o["percentiles"]) if "percentiles" in o else []
    for label, base in (("e2e", e2e_us), ("model", model_us)):
        print(f"{label} latency (us):")
        print(f"    avg latency: {base}\n    min latency: {base - 50}\n    max latency: {base + 80}")
        for p in pcts:
            print(f"    p{p} latency: {base - 50 + int(1.3 * p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
