"""Parsers for what Sophon tools print: bm-smi, bmrt_test, TPU-MLIR's npz compare and
calibration table, model_tool --info. Pure functions over text, tested on recorded outputs."""
from __future__ import annotations

import re
from typing import Any

_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][A-Za-z0-9]|[=>78])")


def strip_ansi(text: str) -> str:
    """Drop terminal escapes and carriage-return progress redraws (bm-smi's curses screen,
    tqdm bars in TPU-MLIR logs)."""
    text = _ANSI.sub("", text)
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


# -- bm-smi ----------------------------------------------------------------------------------

def chip_family(board: str | None) -> str | None:
    """Compiler chip name from a bm-smi board name: ``1684X-SC7`` -> bm1684x,
    ``1684-SC5+`` -> bm1684; None for boards this plugin does not compile for."""
    if not board:
        return None
    b = board.strip().upper()
    if b.startswith("1684X") or b.startswith("BM1684X"):
        return "bm1684x"
    if b.startswith("1684") or b.startswith("BM1684"):
        return "bm1684"
    return None


def _mem(used: str, total: str) -> tuple[int | None, int | None]:
    def mb(v: str) -> int | None:
        m = re.match(r"(\d+)\s*MB", v.strip())
        return int(m.group(1)) if m else None
    return mb(used), mb(total)


def _na(v: str) -> str | None:
    return None if v in ("N/A", "NA", "-") else v


def parse_bm_smi_text(text: str) -> list[dict[str, Any]]:
    """``bm-smi --text_format`` (PCIe): one line per chip,
    ``<board> <mode> chipK: TPU Bus-ID Status boardT chipT TPU_P TPU_V ECC CorrectN Tpu-Util
    Minclk Maxclk Curclk TPU_C MemUsed MemTotal``."""
    devices = []
    for line in strip_ansi(text).splitlines():
        m = re.match(r"\s*(\S+)\s+(\S+)\s+chip(\d+):\s+(.*)$", line)
        if not m:
            continue
        board, mode, _chip_idx, rest = m.groups()
        f = rest.split()
        if len(f) < 16:
            continue
        used, total = _mem(f[14], f[15])
        devices.append({
            "id": int(f[0]), "board": board, "mode": mode, "chip": chip_family(board),
            "bus_id": f[1], "status": f[2], "board_temp": _na(f[3]), "chip_temp": _na(f[4]),
            "power": _na(f[5]), "util": _na(f[9]), "memory_used_mb": used, "memory_total_mb": total,
        })
    return devices


def parse_bm_smi_display(text: str) -> list[dict[str, Any]]:
    """The bm-smi display table (``--noloop`` / ``--file``): after the ``|====+====|`` rule,
    two rows per chip: ``card Name Mode SN | TPU boardT chipT TPU_P TPU_V [ECC] CorrectN
    Tpu-Util`` and ``12V_ATX MaxP boardP Minclk Maxclk Fan | Bus-ID Status Currclk TPU_C
    Memory-Usage``."""
    lines = strip_ansi(text).splitlines()
    header = {}
    devices: list[dict[str, Any]] = []
    in_table = False
    pending: list[str] | None = None
    for line in lines:
        m = re.search(r"SDK Version:\s*(\S+)", line)
        if m:
            header["sdk_version"] = m.group(1)
        m = re.search(r"(Driver|Lib) Version:\s*(\S+)", line)
        if m:
            header[f"{m.group(1).lower()}_version"] = m.group(2)
        s = line.strip()
        if re.match(r"^\|=+\+=+\|$", s):
            in_table = True
            continue
        if re.match(r"^\+=+\+=+\+$", s) or s.startswith("| Processes"):
            in_table = False
            pending = None
            continue
        if not in_table or not s.startswith("|") or s.count("|") < 3:
            continue
        left, right = [p.split() for p in s.strip("|").split("|")[:2]]
        if pending is None:
            pending = left + ["|"] + right
            continue
        first, second = pending, left + ["|"] + right
        pending = None
        bar1, bar2 = first.index("|"), second.index("|")
        l1, r1, r2 = first[:bar1], first[bar1 + 1:], second[bar2 + 1:]
        if len(l1) < 3 or not r1 or len(r2) < 2:
            continue
        mem = " ".join(r2[4:]) if len(r2) > 4 else ""
        mm = re.match(r"(\S+)\s*/\s*(\S+)", mem)
        used, total = _mem(*mm.groups()) if mm else (None, None)
        board = l1[1]
        devices.append({
            "id": int(r1[0]) if r1[0].isdigit() else len(devices), "card": int(l1[0]) if l1[0].isdigit() else None,
            "board": board, "mode": l1[2], "chip": chip_family(board), "sn": _na(l1[3]) if len(l1) > 3 else None,
            "bus_id": _na(r2[0]), "status": r2[1], "board_temp": _na(r1[1]) if len(r1) > 1 else None,
            "chip_temp": _na(r1[2]) if len(r1) > 2 else None, "util": _na(r1[-1]),
            "memory_used_mb": used, "memory_total_mb": total, **header,
        })
    return devices


def parse_bm_smi(text: str) -> list[dict[str, Any]]:
    """Either bm-smi format."""
    if re.search(r"^\s*\|=+\+=+\|", strip_ansi(text), re.M):
        return parse_bm_smi_display(text)
    return parse_bm_smi_text(text)


# -- bmrt_test -------------------------------------------------------------------------------

_LAUNCH = re.compile(r"net\[(?P<net>[^\]]+)\] stage\[(?P<stage>\d+)\], launch total time is (?P<total>\d+) us"
                     r"(?: \(npu (?P<npu>\d+) us, (?:cpu|normal) (?P<cpu>\d+) us\))?")
_TIME = re.compile(r"INFO:(load input|pre alloc|calculate|get output|compare)\s+time\(s\):\s*([0-9.eE+-]+)")
_INPUT = re.compile(r"Input (\d+)\) '([^']+)' shape=\[([^\]]*)\] dtype=(\S+)")
_OUTDATA = re.compile(r"output data #(\d+) shape: \[([^\]]*)\]")


def parse_bmrt_test(text: str) -> dict[str, Any]:
    """One bmrt_test run: net info, every launch (total/npu/cpu us), the time(s) lines, the
    compare verdict, and the batch (from the input shape, else the first output's shape)."""
    text = strip_ansi(text)
    launches = []
    for m in _LAUNCH.finditer(text):
        launches.append({"net": m["net"], "stage": int(m["stage"]), "total_us": int(m["total"]),
                         "npu_us": int(m["npu"]) if m["npu"] else None,
                         "cpu_us": int(m["cpu"]) if m["cpu"] else None})
    times = {k.replace(" ", "_"): float(v) for k, v in _TIME.findall(text)}
    inputs = [{"index": int(i), "name": n, "shape": [int(v) for v in s.split()], "dtype": d}
              for i, n, s, d in _INPUT.findall(text)]
    outputs = [[int(v) for v in s.split()] for _i, s in _OUTDATA.findall(text)]
    batch = None
    if inputs and inputs[0]["shape"]:
        batch = inputs[0]["shape"][0]
    elif outputs and outputs[0]:
        batch = outputs[0][0]
    m = re.search(r"NetName: (\S+)", text)
    net = m.group(1).rstrip(",") if m else (launches[0]["net"] if launches else None)
    compare = None
    if "cmp success" in text:
        compare = True
    elif re.search(r"cmp (failed|error)|compare failed", text, re.I):
        compare = False
    return {"net": net, "batch": batch, "inputs": inputs, "output_shapes": outputs,
            "launches": launches, "times_s": times, "compare": compare}


def bmrt_rows(parsed: dict[str, Any]) -> list[dict[str, Any]]:
    """bench-table rows from a parsed bmrt_test run (one per stage launched): latency is the
    mean ``launch total time`` (what the chip spent per batch incl. the runtime's host
    part), else ``calculate time``; ``device_ips`` = batch / latency."""
    batch = parsed.get("batch") or 1
    by_stage: dict[int, list[dict[str, Any]]] = {}
    for launch in parsed["launches"]:
        by_stage.setdefault(launch["stage"], []).append(launch)
    rows = []
    calc = parsed["times_s"].get("calculate")
    if not by_stage and calc:
        by_stage = {0: []}
    for stage, launches in sorted(by_stage.items()):
        if launches:
            lat_ms = sum(x["total_us"] for x in launches) / len(launches) / 1000
            npu = [x["npu_us"] for x in launches if x["npu_us"] is not None]
            npu_ms = sum(npu) / len(npu) / 1000 if npu else None
        else:
            lat_ms, npu_ms = (calc or 0) * 1000, None
        if lat_ms <= 0:
            continue
        row = {"batch": batch, "latency_ms": round(lat_ms, 4), "device_ips": round(batch * 1000 / lat_ms, 3),
               "npu_ms": round(npu_ms, 4) if npu_ms is not None else None,
               "per_image_ms": round(lat_ms / batch, 4), "loops": max(1, len(launches)),
               "stage": stage, "source": "bmrt_test"}
        if calc:
            row["calculate_ms"] = round(calc * 1000, 4)
        if parsed.get("compare") is not None:
            row["bmrt_compare"] = "passed" if parsed["compare"] else "failed"
        rows.append(row)
    return rows


# -- TPU-MLIR npz compare ---------------------------------------------------------------------

_CMP_RUN = re.compile(r"^\[Running\]: npz_tool\.py compare (\S+) (\S+)(?: --tolerance (\S+))?")
_TENSOR = re.compile(r"^\[(?P<name>.+?)\s*\]\s+(?P<verdict>[A-Z_]+)\s+\[\s*(?P<status>PASSED|FAILED)\]")
_FIG = re.compile(r"^\s+(cosine|euclidean|sqnr)_similarity\s*=\s*(\S+)")
_MINSIM = re.compile(r"^min_similarity = \(([^,]+), ([^,]+), ([^)]+)\)")


def _num(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def parse_npz_compares(text: str) -> list[dict[str, Any]]:
    """Every ``npz_tool.py compare`` block of a model_transform / model_deploy log: the two
    files, the tolerance, each tensor's verdict and similarity figures, min_similarity and
    the overall PASSED/FAILED line."""
    blocks: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    tensor: dict[str, Any] | None = None
    for raw in strip_ansi(text).splitlines():
        line = raw.rstrip()
        m = _CMP_RUN.match(line)
        if m:
            cur = {"target": m.group(1), "reference": m.group(2), "tolerance": m.group(3),
                   "tensors": [], "passed": None, "min_similarity": None}
            blocks.append(cur)
            tensor = None
            continue
        if cur is None:
            continue
        m = _TENSOR.match(line)
        if m:
            tensor = {"name": m["name"].strip(), "verdict": m["verdict"], "passed": m["status"] == "PASSED"}
            cur["tensors"].append(tensor)
            continue
        m = _FIG.match(line)
        if m and tensor is not None:
            tensor[m.group(1)] = _num(m.group(2))
            continue
        m = re.match(r"^\s+close order\s*=\s*(\S+)", line)
        if m and tensor is not None:
            tensor["close_order"] = _num(m.group(1))
            continue
        m = _MINSIM.match(line)
        if m:
            cur["min_similarity"] = {"cosine": _num(m.group(1)), "euclidean": _num(m.group(2)),
                                     "sqnr": _num(m.group(3))}
            continue
        if line.startswith("npz compare PASSED"):
            cur["passed"] = True
        elif line.startswith("npz compare FAILED"):
            cur["passed"] = False
    for b in blocks:
        if b["passed"] is None and b["tensors"]:  # log cut short: judge by the tensors seen
            b["passed"] = all(t["passed"] for t in b["tensors"])
    return blocks


# npz_tool's verdict words, including its own spelling of NOT_SIMILAR
_VERDICTS = {"NOT_SIMLIAR": "not similar", "NOT_SIMILAR": "not similar", "NOT_EQUAL": "not equal"}


def describe_failure(block: dict[str, Any]) -> str:
    """One line naming the tensors that broke the tolerance and their figures."""
    bad = [t for t in block["tensors"] if not t["passed"]] or block["tensors"][:1]
    parts = []
    for t in bad[:3]:
        figs = ", ".join(f"{k} {t[k]:.6f}" for k in ("cosine", "euclidean") if t.get(k) is not None)
        verdict = _VERDICTS.get(t["verdict"], t["verdict"].lower())
        parts.append(f"{t['name']} {verdict}" + (f" ({figs})" if figs else ""))
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return (f"{block['target']} vs {block['reference']} (tolerance cosine,euclidean = {block['tolerance']}): "
            + "; ".join(parts) + more)


# -- calibration table ------------------------------------------------------------------------

def parse_calibration_table(text: str) -> dict[str, Any]:
    """run_calibration's table: ``# key: value`` header comments and ``op threshold min max``
    rows (later sections such as ``#int4_th`` are ignored)."""
    meta: dict[str, Any] = {}
    ops: dict[str, dict[str, float]] = {}
    section_done = False
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            if ops and not s.startswith("# op_name"):
                section_done = True
            m = re.match(r"#\s*([^:#]+?)\s*:\s*(.*)$", s)
            if m and not ops:
                meta[m.group(1).strip()] = m.group(2).strip()
            continue
        if section_done:
            continue
        f = s.split()
        if len(f) >= 4:
            try:
                ops[f[0]] = {"threshold": float(f[1]), "min": float(f[2]), "max": float(f[3])}
            except ValueError:
                continue
    m = re.search(r"v?(\d+\.\d+\.\d+)", meta.get("mlir version", ""))
    return {"version": m.group(1) if m else None, "method": meta.get("quantization threshold calculation method"),
            "samples": int(meta["sample number"]) if meta.get("sample number", "").isdigit() else None,
            "meta": meta, "ops": ops}


# -- model_tool --info ------------------------------------------------------------------------

def parse_model_info(text: str) -> dict[str, Any]:
    """``model_tool --info x.bmodel``: chip and, per net, its stages' input/output shapes."""
    text = strip_ansi(text)
    m = re.search(r"^chip:\s*(\S+)", text, re.M)
    info: dict[str, Any] = {"chip": m.group(1).lower() if m else None, "nets": []}
    net = stage = None
    for line in text.splitlines():
        m = re.match(r"^net (\d+): \[([^\]]+)\]\s*(\S+)?", line)
        if m:
            net = {"name": m.group(2), "mode": m.group(3), "stages": []}
            info["nets"].append(net)
            continue
        m = re.match(r"^stage (\d+)", line)
        if m and net is not None:
            stage = {"index": int(m.group(1)), "inputs": [], "outputs": []}
            net["stages"].append(stage)
            continue
        m = re.match(r"^(input|output): (.+?), \[([^\]]*)\], (\w+)", line)
        if m and stage is not None:
            stage[m.group(1) + "s"].append({"name": m.group(2), "dtype": m.group(4),
                                           "shape": [int(v) for v in m.group(3).replace(",", " ").split()]})
    return info
