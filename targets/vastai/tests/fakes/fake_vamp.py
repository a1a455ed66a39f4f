"""Stand-in for ``vamp`` (VastAI's model profiler): parses its command line the way VastAI's
profilers do, checks the model prefix, the vdsp_params JSON and the shape against the model's
input, then prints a report in the recorded vamp formats.

The options: vamp's documented ones (VastModelZOO's docs and the vamp_2.1.0
capture in tests/fixtures/toolchains): ``-m``, ``--vdsp_params``, ``-i``/``--instance``,
``-p``/``--processes``, ``-b``/``--batch_size``, ``-d``, ``-s``, ``--iterations``, ``--datalist``,
``--path_output``, ``--percentiles``, ``--forward_mode``, ``--dtype``, ``-t``, ``-f``. The long
names of ``-m``, ``-d`` and ``-s`` are those of VastAI's own profiling samples
(Vastai/VastStreamX-Samples ``*_prof.cpp``: ``model_prefix``, ``device_ids``, ``shape``); ``-t``
and ``-f`` are documented only in their short form, so no long form is accepted for them.

vamp's source is not public. Its parser is taken to be the one VastAI's profiling samples use,
``common/cmdline.hpp`` of VastStreamX-Samples (tanakh's cmdline): ``--name=value`` and
``--name value``, ``-x value``, words that are not options are ignored (which is why the ZOO's
``-i 1 p 1`` typo goes unnoticed), and an error prints its first message (``undefined option:
--name``, ``undefined short option: -x``, ``option needs value: --name``, ``option value is
invalid: --name=value``, ``need option: --name``), then the usage, to stderr, and exits 1; no
arguments at all print the usage and exit 0. No recorded vamp refusal exists to compare with.

FAKE_VAMP_MODE = ok (vamp 2.1.0 format with percentiles) | old (2.x format: samples / forwad
time, no percentiles) | fail (exit 1). FAKE_VASTAI_CALLS names a JSON-lines call log.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

import vastai_fakelib as lib


class Opt(NamedTuple):
    long: str | None
    short: str | None
    kind: str  # "string" | "uint" | "int"
    required: bool
    default: str
    desc: str


OPTIONS = [
    Opt("model_prefix", "m", "string", True, "", "model prefix of the model suite files"),
    Opt("vdsp_params", None, "string", False, "", "vdsp preprocess parameter file"),
    Opt("device_ids", "d", "string", False, "[0]", "device ids to run: 0, 0:3 or [0,2]"),
    Opt("batch_size", "b", "uint", False, "1", "profiling batch size of the model"),
    Opt("instance", "i", "uint", False, "1", "model instance number in each device"),
    Opt("processes", "p", "uint", False, "1", "process number"),
    Opt("shape", "s", "string", False, "", "model input shape, e.g. [3,224,224]"),
    Opt("iterations", None, "int", False, "1024", "iterations count for one profiling"),
    Opt("percentiles", None, "string", False, "", "percentiles of latency, e.g. [50,90,95,99]"),
    Opt("datalist", None, "string", False, "", "list of .npz inputs to run"),
    Opt("path_output", None, "string", False, "", "folder for the outputs of --datalist"),
    Opt("forward_mode", None, "int", False, "0", "forward mode: 0 or 1"),
    Opt("dtype", None, "string", False, "uint8", "input data type"),
    Opt(None, "t", "uint", False, "0", "profiling time in seconds"),
    Opt(None, "f", "string", False, "", "report file (yaml)"),
    Opt("help", "?", "flag", False, "", "print this message"),
]
BY_LONG = {o.long: o for o in OPTIONS if o.long}
BY_SHORT = {o.short: o for o in OPTIONS if o.short}


def key(o: Opt) -> str:
    return o.long or "-" + str(o.short)


def usage() -> str:
    lines = ["usage: vamp " + " ".join(f"--{o.long}={o.kind}" for o in OPTIONS if o.required) + " [options] ... ",
             "options:"]
    for o in OPTIONS:
        flag = f"  -{o.short}, " if o.short else "      "
        name = f"--{o.long}" if o.long else ""
        lines.append(f"{flag}{name:<18}{o.desc}" + ("" if o.kind == "flag" else f" ({o.kind} [={o.default}])"))
    return "\n".join(lines) + "\n"


def _valid(o: Opt, value: str) -> bool:
    if o.kind == "uint":
        return value.isdigit()
    if o.kind == "int":
        return re.fullmatch(r"-?\d+", value) is not None
    return True


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """cmdline.hpp's parse(): the options set and the error messages, in order."""
    opts: dict[str, str] = {}
    errors: list[str] = []

    def set_option(o: Opt, value: str | None) -> None:
        name = o.long or str(o.short)
        if o.kind == "flag":
            if value is not None:
                errors.append(f"option needs value: --{name}")  # set(value) fails on a flag
                return
            opts[key(o)] = "1"
        elif value is None:
            errors.append(f"option needs value: --{name}")
        elif not _valid(o, value):
            errors.append(f"option value is invalid: --{name}={value}")
        else:
            opts[key(o)] = value

    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            o = BY_LONG.get(name)
            if o is None:
                errors.append(f"undefined option: --{name}")
            elif eq:
                set_option(o, value)
            elif o.kind == "flag":
                set_option(o, None)
            elif i >= len(argv):
                errors.append(f"option needs value: --{name}")
            else:
                set_option(o, argv[i])
                i += 1
        elif a.startswith("-"):
            if len(a) == 1:
                continue
            for ch in a[1:-1]:  # "-abc": a and b are switches, c may take the next word
                o = BY_SHORT.get(ch)
                if o is None:
                    errors.append(f"undefined short option: -{ch}")
                else:
                    set_option(o, None)
            o = BY_SHORT.get(a[-1])
            if o is None:
                errors.append(f"undefined short option: -{a[-1]}")
            elif i < len(argv) and o.kind != "flag":
                set_option(o, argv[i])
                i += 1
            else:
                set_option(o, None)
        # anything else is a program argument, which vamp does not read
    for o in OPTIONS:
        if o.required and key(o) not in opts:
            errors.append(f"need option: --{o.long}")
    return opts, errors


def ints(text: str) -> list[int] | None:
    m = re.fullmatch(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]", text)
    return [int(v) for v in m.group(1).split(",")] if m else None


def devices(text: str) -> list[int] | None:
    """``0``, ``0:3`` (a range) or ``[0,2]`` (a list)."""
    if re.fullmatch(r"\d+", text):
        return [int(text)]
    m = re.fullmatch(r"(\d+):(\d+)", text)
    if m and int(m.group(1)) <= int(m.group(2)):
        return list(range(int(m.group(1)), int(m.group(2)) + 1))
    return ints(text)


def check(o: dict[str, str]) -> tuple[dict, list[int], str | None]:
    """The values against the model; returns (model header, devices, error line)."""
    try:
        header, _ = lib.read_model(o["model_prefix"])
    except (RuntimeError, OSError, ValueError) as e:
        return {}, [], f"vamp: {e}"
    c, h, w = header["shape"][1:]
    if not o.get("vdsp_params"):
        return header, [], "vamp: --vdsp_params is required for an image model"
    try:
        vdsp = json.loads(Path(o["vdsp_params"]).read_text())
        cfg = vdsp["OpConfig"]
        op = vdsp["OpType"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return header, [], f"vamp: cannot read vdsp params {o['vdsp_params']}: {e}"
    if op != "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR":
        return header, [], f"vamp: unsupported vdsp op {op}"
    if (cfg.get("OimageHeight"), cfg.get("OimageWidth")) != (h, w):
        return header, [], (f"vamp: vdsp output {cfg.get('OimageHeight')}x{cfg.get('OimageWidth')} does not match "
                            f"the model input {h}x{w}")
    if "shape" in o and ints(o["shape"]) != [c, h, w]:
        return header, [], f"vamp: -s {o['shape']} does not match the model input [{c},{h},{w}]"
    devs = devices(o.get("device_ids", "[0]"))
    if devs is None:
        return header, [], f"vamp: bad device ids {o['device_ids']!r} (0, 0:3 or [0,2])"
    if "percentiles" in o and (ints(o["percentiles"]) is None or not all(0 < p < 100 for p in ints(o["percentiles"]))):
        return header, [], f"vamp: bad percentiles {o['percentiles']!r} (e.g. [50,90,95,99])"
    if min(int(o.get(k, "1")) for k in ("instance", "processes", "batch_size")) < 1:
        return header, [], "vamp: -i, -p and -b must be positive"
    if int(o.get("iterations", "1024")) < 1:
        return header, [], "vamp: --iterations must be positive"
    if o.get("forward_mode", "0") not in ("0", "1"):
        return header, [], f"vamp: --forward_mode must be 0 or 1, not {o['forward_mode']}"
    if ("datalist" in o) != ("path_output" in o):
        return header, [], "vamp: --datalist and --path_output go together"
    return header, devs, None


def main() -> int:
    argv = sys.argv[1:]
    lib.log_call(["vamp", *argv])
    o, errors = parse(argv)
    if (not argv and errors) or "help" in o:
        sys.stderr.write(usage())
        return 0
    if errors:
        sys.stderr.write(errors[0] + "\n" + usage())
        return 1
    if os.environ.get("FAKE_VAMP_MODE", "ok") == "fail":
        print("vamp: failed to init graph: device 0 busy")
        return 1
    header, devs, error = check(o)
    if error:
        print(error)
        return 1
    report(o, header, devs)
    return 0


def report(o: dict[str, str], header: dict, devs: list[int]) -> None:
    c, h, w = header["shape"][1:]
    inst, batch = int(o.get("instance", "1")), int(o.get("batch_size", "1"))
    iterations = int(o.get("iterations", "1024"))
    model_us = 200 + 150 * batch
    e2e_us = model_us * (1 + inst)
    qps = inst * batch * 1e6 / model_us
    print(f"model input shape 0: [{c},{h},{w}], dtype: u1")
    print("load model and init graph done")
    print(f"- number of instances in each device: {inst}")
    print(f"devices: [{','.join(map(str, devs))}]")
    if os.environ.get("FAKE_VAMP_MODE", "ok") == "old":
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
        return
    print(f"batch size: {batch}")
    print("ai utilize (%): 94.9018")
    print("temperature (°C): 49.1461")
    print("card power (W): 31.4001")
    print("die memory used (MB): 1516.29")
    print(f"throughput (qps): {qps:.6g}")
    pcts = ints(o["percentiles"]) or [] if "percentiles" in o else []
    for label, base in (("e2e", e2e_us), ("model", model_us)):
        print(f"{label} latency (us):")
        print(f"    avg latency: {base}\n    min latency: {base - 50}\n    max latency: {base + 80}")
        for p in pcts:
            print(f"    p{p} latency: {base - 50 + int(1.3 * p)}")


if __name__ == "__main__":
    sys.exit(main())
