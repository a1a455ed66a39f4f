"""Parsers for what the Ascend tools print. Tested on every recorded output in
tests/fixtures/toolchains/ (npu-smi_info_*, ais_bench_*), which show the formats.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .commands import normalise_soc

# ---------------------------------------------------------------------------------------------
# npu-smi
# ---------------------------------------------------------------------------------------------
_RULE = re.compile(r"^[+|][-=+|\s]*$")
_BUS = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]$")
_BANNER = re.compile(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)", re.IGNORECASE)
_USAGE = re.compile(r"(\d+)\s*/\s*(\d+)")


@dataclass
class Chip:
    """One chip of ``npu-smi info``. ``device`` is the logical id that ``--device`` /
    ``InferSession(device_id)`` want (the Device column); the NPU id is not."""

    npu: int
    chip: int
    device: int | None
    name: str
    health: str
    bus_id: str | None = None
    power_w: float | None = None
    temp_c: float | None = None
    memory_used_mb: int | None = None
    memory_total_mb: int | None = None
    hbm_used_mb: int | None = None
    hbm_total_mb: int | None = None

    @property
    def soc(self) -> str | None:
        try:
            return normalise_soc(self.name)
        except Exception:  # redacted ("xxx") or unknown names: no soc to offer
            return None

    def to_dict(self) -> dict[str, Any]:
        return {"npu": self.npu, "chip": self.chip, "device": self.device, "name": self.name,
                "soc": self.soc, "health": self.health, "bus_id": self.bus_id,
                "memory_used_mb": self.memory_used_mb, "memory_total_mb": self.memory_total_mb}


@dataclass
class NpuSmiInfo:
    chips: list[Chip] = field(default_factory=list)
    tool_version: str | None = None
    driver_version: str | None = None
    processes: list[dict[str, Any]] = field(default_factory=list)


def _cells(line: str) -> list[str]:
    # "| a | b | c |" -> ["a", "b", "c"]
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _int(tok: str) -> int | None:
    return int(tok) if re.fullmatch(r"\d+", tok or "") else None


def _float(tok: str) -> float | None:
    try:
        return float(tok)
    except (TypeError, ValueError):
        return None


def parse_npu_smi_info(text: str) -> NpuSmiInfo:
    """Parse ``npu-smi info`` (table view) or ``npu-smi info -m`` (mapping view).

    Table view: per chip a name row (``NPU Name | Health | Power Temp Hugepages``) and a chip
    row (``Chip [Device] | Bus-Id | AICore Memory [HBM]``). Training cards (910) have no
    Device column: their logical ids are then the chips' order, which is what ``-m`` prints
    for them (Chip Logic ID 0..7). Rows after the process-table header are processes.
    """
    if re.search(r"^\s*NPU ID\s+Chip ID\s+Chip Logic ID", text, re.MULTILINE):
        return _parse_mapping(text)
    info = NpuSmiInfo()
    pending: dict[str, Any] | None = None
    in_processes = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or _RULE.match(line.strip()):
            continue
        m = _BANNER.search(line)
        if m:
            info.tool_version, info.driver_version = m.group(1), m.group(2)
            continue
        if not line.lstrip().startswith("|"):
            continue
        cells = _cells(line)
        head = cells[0].split()
        if head[:1] == ["NPU"] and len(cells) > 1 and "Process" in cells[1]:
            in_processes = True
            continue
        if head[:1] in (["NPU"], ["Chip"]):  # column headers
            continue
        if in_processes:
            if len(cells) >= 4 and len(head) >= 2:
                info.processes.append({"npu": _int(head[0]), "chip": _int(head[1]),
                                       "pid": _int(cells[1]), "name": cells[2],
                                       "memory_mb": _int(cells[3].split()[0]) if cells[3] else None})
            continue
        if len(cells) < 2:
            continue
        if _BUS.match(cells[1]) or cells[1] == "NA":
            if pending is None or not head or _int(head[0]) is None:
                continue
            device = _int(head[1]) if len(head) > 1 else None
            usage = _USAGE.findall(cells[2]) if len(cells) > 2 else []
            chip = Chip(npu=pending["npu"], chip=int(head[0]), device=device, name=pending["name"],
                        health=pending["health"], bus_id=cells[1] if cells[1] != "NA" else None,
                        power_w=pending["power"], temp_c=pending["temp"])
            if usage:
                chip.memory_used_mb, chip.memory_total_mb = int(usage[0][0]), int(usage[0][1])
            if len(usage) > 1:
                chip.hbm_used_mb, chip.hbm_total_mb = int(usage[1][0]), int(usage[1][1])
            info.chips.append(chip)
            pending = None
        elif head and _int(head[0]) is not None:
            extra = cells[2].split() if len(cells) > 2 else []
            pending = {"npu": int(head[0]), "name": " ".join(head[1:]), "health": cells[1],
                       "power": _float(extra[0]) if extra else None,
                       "temp": _float(extra[1]) if len(extra) > 1 else None}
    if info.chips and all(c.device is None for c in info.chips):
        for i, c in enumerate(info.chips):
            c.device = i
    return info


def _parse_mapping(text: str) -> NpuSmiInfo:
    info = NpuSmiInfo()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or _int(parts[0]) is None:
            continue
        logic = _int(parts[2])
        if logic is None:  # the Mcu row has logic id "-": not a compute chip
            continue
        info.chips.append(Chip(npu=int(parts[0]), chip=int(parts[1]), device=logic,
                               name=" ".join(parts[3:]), health="unknown"))
    return info


def choose_chip(info: NpuSmiInfo, device: int | None = None) -> Chip | None:
    """The chip with logical id ``device``, else the first chip whose name gives a soc."""
    if device is not None:
        return next((c for c in info.chips if c.device == device), None)
    return next((c for c in info.chips if c.soc), None)


# ---------------------------------------------------------------------------------------------
# ais_bench
# ---------------------------------------------------------------------------------------------
_STAT_LINE = re.compile(r"(NPU_compute_time|H2D_latency|D2H_latency)\s*\(ms\)\s*:\s*(.*)$")
_STAT_KV = re.compile(r"(min|max|mean|median|percentile\((\d+)%\))\s*=\s*([-+0-9.eE]+|nan|inf)")
_TABLE_ROW = re.compile(r"^[│|]\s*(NPU_compute_time|H2D_latency|D2H_latency)\s*\(ms\)\s*[│|](.*)$")
_THROUGHPUT = re.compile(r"throughput", re.IGNORECASE)
_BATCH_IN_LINE = re.compile(r"batchsize(?:\.mean)?\(([-+0-9.eE]+)\)")
_DEVICE_LINE = re.compile(r"i:(\d+)\s+device_(\d+)\s+throughput:\s*([-+0-9.eE]+)"
                          r"(?:\s+start_time:\s*([-+0-9.eE]+))?(?:\s+end_time:\s*([-+0-9.eE]+))?")
_SUMMARY_TP = re.compile(r"summary throughput\s*:\s*([-+0-9.eE]+)", re.IGNORECASE)
_GUESSED_BATCH = re.compile(r"try get model batchsize:\s*(-?\d+)")


@dataclass
class AisSummary:
    """One ``Performance Summary`` block (one per device in a multi-device run)."""

    npu_compute_time: dict[str, float] = field(default_factory=dict)
    h2d_latency: dict[str, float] = field(default_factory=dict)
    d2h_latency: dict[str, float] = field(default_factory=dict)
    throughput: float | None = None
    batchsize: float | None = None


@dataclass
class AisBenchReport:
    summaries: list[AisSummary] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    summary_throughput: float | None = None
    guessed_batchsize: int | None = None


def _stat_dict(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, pct, value in _STAT_KV.findall(text):
        out[f"p{pct}" if pct else key] = float(value)
    return out


def parse_ais_bench_output(text: str) -> AisBenchReport:
    """Parse ais_bench / ais_infer / msit benchmark console output.

    Throughput line forms (the number after the last ``:`` is the figure):
    ``throughput 1000*batchsize.mean(1)/NPU_compute_time.mean(2.456): 407.16`` (current),
    ``throughput 1000*batchsize(16)/NPU_compute_time.mean(21.94): 729.26`` (older),
    ``throughput (1000*batchsize/NPU_compute_time): 171.57`` (ais_infer). Newer builds print
    the statistics as a table and spell ``Throughput``; both are accepted.
    """
    rep = AisBenchReport()
    cur: AisSummary | None = None

    def current() -> AisSummary:
        nonlocal cur
        if cur is None:
            cur = AisSummary()
            rep.summaries.append(cur)
        return cur

    for raw in text.splitlines():
        line = raw.strip()
        body = re.sub(r"^\[(INFO|WARNING|DEBUG|ERROR)\]\s*", "", line)
        if "Performance Summary" in body:
            cur = AisSummary()
            rep.summaries.append(cur)
            continue
        m = _GUESSED_BATCH.search(body)
        if m:
            rep.guessed_batchsize = int(m.group(1))
            continue
        m = _DEVICE_LINE.search(body)
        if m:
            rep.devices.append({"index": int(m.group(1)), "device": int(m.group(2)),
                                "throughput": float(m.group(3)),
                                "start_time": float(m.group(4)) if m.group(4) else None,
                                "end_time": float(m.group(5)) if m.group(5) else None})
            continue
        m = _SUMMARY_TP.search(body)
        if m:
            rep.summary_throughput = float(m.group(1))
            continue
        m = _STAT_LINE.search(body)
        if m:
            setattr(current(), m.group(1).lower(), _stat_dict(m.group(2)))
            continue
        m = _TABLE_ROW.match(line)
        if m:
            nums = [float(v) for v in re.findall(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", m.group(2))]
            if len(nums) >= 5:
                setattr(current(), m.group(1).lower(),
                        dict(zip(("min", "max", "mean", "median", "p99"), nums[:5])))
            continue
        if _THROUGHPUT.search(body) and ":" in body:
            tail = body.rsplit(":", 1)[1].strip()
            try:
                value = float(tail.split()[0])
            except (ValueError, IndexError):
                continue
            s = current()
            s.throughput = value
            b = _BATCH_IN_LINE.search(body)
            if b:
                s.batchsize = float(b.group(1))
            cur = None  # the throughput line closes a summary
    return rep


def load_ais_summary_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _stats_from_json(obj: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in (obj or {}).items():
        if not isinstance(v, (int, float)):
            continue
        m = re.fullmatch(r"(?:percentile\((\d+)%\)|P(\d+))", k)
        if m:
            out[f"p{m.group(1) or m.group(2)}"] = float(v)
        elif k in ("min", "max", "mean", "median", "count"):
            out[k] = float(v)
    return out


def _durations(values: Iterable[Any]) -> list[float]:
    """npu_compute_time_list holds ms per call, or [start, end] pairs in multi-thread runs."""
    out = []
    for v in values:
        if isinstance(v, (list, tuple)) and len(v) == 2:
            out.append(float(v[1]) - float(v[0]))
        else:
            out.append(float(v))
    return out


def bench_row(batch: int, *, summary_json: dict[str, Any] | None = None,
              text_summary: AisSummary | None = None, warmup: int = 1,
              iterations: int | None = None) -> dict[str, Any]:
    """One row of the common bench table from ais_bench's summary JSON (preferred: it has
    every per-call time, so p50/p90/p99 come from the list) or its console summary.

    ``latency_ms`` is the device compute time of one batch; ``device_ips`` =
    1000 * batch / mean, the same formula ais_bench prints (device only: no H2D/D2H, no host
    pre/post-processing)."""
    npu: dict[str, float] = {}
    h2d: dict[str, float] = {}
    d2h: dict[str, float] = {}
    reported = None
    times: list[float] = []
    source = "ais_bench console summary"
    if summary_json is not None:
        npu = _stats_from_json(summary_json.get("NPU_compute_time"))
        h2d = _stats_from_json(summary_json.get("H2D_latency"))
        d2h = _stats_from_json(summary_json.get("D2H_latency"))
        reported = summary_json.get("throughput")
        times = _durations(summary_json.get("npu_compute_time_list") or [])
        source = "ais_bench summary.json"
    elif text_summary is not None:
        npu, h2d, d2h = text_summary.npu_compute_time, text_summary.h2d_latency, text_summary.d2h_latency
        reported = text_summary.throughput
    if times:
        arr = np.asarray(times, dtype=np.float64)
        lat = {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
               "p90": float(np.percentile(arr, 90)), "p99": float(np.percentile(arr, 99)),
               "min": float(arr.min()), "max": float(arr.max())}
    else:
        lat = {k: v for k, v in (("mean", npu.get("mean")), ("p50", npu.get("median")),
                                 ("p99", npu.get("p99")), ("min", npu.get("min")),
                                 ("max", npu.get("max"))) if v is not None}
    if "mean" in npu:
        lat["mean"] = npu["mean"]  # ais_bench's own mean (merged intervals in multi-thread runs)
    mean = lat.get("mean")
    if not mean:
        raise ValueError("ais_bench output has no NPU_compute_time mean")
    count = int(npu["count"]) if "count" in npu else (len(times) or iterations)
    row: dict[str, Any] = {
        "batch": int(batch), "device_ips": 1000.0 * batch / mean,
        "latency_ms": {k: round(v, 6) for k, v in lat.items()},
        "warmup": warmup, "iterations": count, "source": source,
        "reported_throughput": float(reported) if reported is not None else None,
    }
    if "mean" in h2d:
        row["h2d_ms"] = h2d["mean"]
    if "mean" in d2h:
        row["d2h_ms"] = d2h["mean"]
    return row


# ---------------------------------------------------------------------------------------------
# ATC and version files
# ---------------------------------------------------------------------------------------------
ATC_SUCCESS = "ATC run success"
_CODE = re.compile(r"\b([EW]\d{5})\b")


@dataclass
class AtcOutcome:
    ok: bool
    success_line: bool
    errors: list[str]
    warnings: list[str]
    message: str


def parse_atc_output(text: str, returncode: int) -> AtcOutcome:
    """ATC's verdict: the exit code decides; the success line and E/W codes are reported.

    Success prints ``ATC run success, welcome to the next use.`` (plus W11001-style warnings);
    failure prints ``ATC run failed, Please check the detail log...`` with E-codes."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    codes = _CODE.findall(text)
    errors = sorted({c for c in codes if c.startswith("E")})
    warnings = sorted({c for c in codes if c.startswith("W")})
    success = any(ATC_SUCCESS in ln for ln in lines)
    if returncode == 0:
        msg = next((ln for ln in lines if ATC_SUCCESS in ln), "exit code 0 (no success line printed)")
    else:
        err_lines = [ln for ln in lines if re.search(r"\bE\d{5}\b", ln)]
        failed = [ln for ln in lines if "ATC run failed" in ln]
        msg = (err_lines or failed or lines[-1:] or [f"exit code {returncode}"])[0]
    return AtcOutcome(ok=returncode == 0, success_line=success, errors=errors, warnings=warnings,
                      message=msg[:300])


def parse_version_info(text: str) -> str | None:
    """``Version=7.0.RC1`` / ``version=6.0.RC1`` lines of CANN's version.info."""
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and k.strip().lower() == "version" and v.strip():
            return v.strip()
    return None
