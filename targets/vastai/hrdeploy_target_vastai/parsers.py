"""Parsers for what the VastAI tools print: vamp (two recorded formats) and vasmi. Tested on
tests/fixtures/toolchains/vamp_*.txt and vasmi_*.txt."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_KV = re.compile(r"^\s*[-*]*\s*([^:]+?)\s*:\s*(.*?)\s*\**\s*$")
_LATENCY = re.compile(r"^(avg|min|max|p\d+)\s+latency$")


def _key(raw: str) -> str:
    k = raw.strip().lower()
    k = re.sub(r"^[-*\s]+|[-*\s]+$", "", k)
    # version quirks: "batch szie", "forwad time (s)"
    return {"batch szie": "batch size", "forwad time (s)": "forward time (s)"}.get(k, k)


def _value(raw: str) -> Any:
    raw = raw.strip()
    if re.fullmatch(_NUM, raw):
        return float(raw) if re.search(r"[.eE]", raw) else int(raw)
    m = re.fullmatch(r"\[(.*)\]", raw)
    if m and all(re.fullmatch(_NUM, p.strip()) for p in m.group(1).split(",") if p.strip()):
        return [int(p) if re.fullmatch(r"[-+]?\d+", p.strip()) else float(p) for p in m.group(1).split(",")
                if p.strip()]
    return raw


@dataclass
class VampRun:
    """One vamp run: flat ``key: value`` figures plus the latency blocks (us)."""

    values: dict[str, Any] = field(default_factory=dict)
    e2e_latency_us: dict[str, float] = field(default_factory=dict)
    model_latency_us: dict[str, float] = field(default_factory=dict)
    label: str | None = None
    command: str | None = None

    @property
    def batch(self) -> int | None:
        v = self.values.get("batch size")
        return int(v) if isinstance(v, (int, float)) else None

    @property
    def throughput(self) -> float | None:
        """Samples per second. vamp's ``throughput (qps)`` counts samples (the VastStreamX
        profiler multiplies by the batch size); ``samples / forward time`` agrees with it."""
        v = self.values.get("throughput (qps)")
        if isinstance(v, (int, float)):
            return float(v)
        s, t = self.values.get("samples"), self.values.get("forward time (s)")
        if isinstance(s, (int, float)) and isinstance(t, (int, float)) and t > 0:
            return float(s) / float(t)
        return None


def parse_vamp_output(text: str) -> list[VampRun]:
    """Every run in a vamp console capture, tolerant of indentation, order and the
    ``- number of instances`` / ``*** number of instances ... ****`` variants. A new run starts
    at each "number of instances" line; ``# label`` comment lines name the next run."""
    runs: list[VampRun] = []
    cur: VampRun | None = None
    block: dict[str, float] | None = None
    label: str | None = None
    command: str | None = None
    header: dict[str, Any] = {}
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped.startswith("#"):
            label = stripped.lstrip("#").strip() or None
            continue
        if re.match(r"^(\./)?vamp\S*\s", stripped):
            command = stripped
            continue
        m = _KV.match(line)
        if not m:
            continue
        key, value = _key(m.group(1)), m.group(2)
        if "number of instances" in key:
            cur = VampRun(label=label, command=command)
            cur.values.update(header)
            header, label, command, block = {}, None, None, None
            runs.append(cur)
            cur.values["instances"] = _value(value)
            continue
        if key in ("e2e latency (us)", "model latency (us)"):
            if cur is None:
                continue
            block = cur.e2e_latency_us if key.startswith("e2e") else cur.model_latency_us
            continue
        lat = _LATENCY.match(key)
        if lat and block is not None:
            v = _value(value)
            if isinstance(v, (int, float)):
                block["mean" if lat.group(1) == "avg" else lat.group(1)] = float(v)
            continue
        block = None
        target = cur.values if cur is not None else header
        target[key] = _value(value)
    return runs


def vamp_row(run: VampRun, *, batch: int | None = None, iterations: int | None = None) -> dict[str, Any]:
    """The common bench-table row: ``device_ips`` in samples/s; ``latency_ms`` from vamp's
    model latency (device time of one request), ``e2e_latency_ms`` from its end-to-end one."""
    b = batch if batch is not None else run.batch
    tp = run.throughput
    if b is None or tp is None:
        raise ValueError("vamp output has no batch size or throughput")
    lat = {k: v / 1000.0 for k, v in run.model_latency_us.items()}
    if "p50" not in lat and "mean" in lat and "min" in lat and lat["min"] == lat.get("max"):
        lat["p50"] = lat["mean"]  # a single-latency block (older vamp)
    row: dict[str, Any] = {
        "batch": int(b), "device_ips": float(tp), "latency_ms": lat,
        "e2e_latency_ms": {k: v / 1000.0 for k, v in run.e2e_latency_us.items()},
        "warmup": None, "iterations": int(run.values["samples"]) if isinstance(run.values.get("samples"), int)
        else iterations, "source": "vamp", "reported_throughput": tp,
    }
    for key, name in (("ai utilize (%)", "ai_utilisation_pct"), ("die memory used (mb)", "die_memory_mb"),
                      ("card power (w)", "card_power_w"), ("temperature (°c)", "temperature_c"),
                      ("number of instances in each device", "instances"), ("instances", "instances"),
                      ("devices", "devices")):
        if key in run.values:
            row[name] = run.values[key]
    return row


# ---------------------------------------------------------------------------------------------
# vasmi
# ---------------------------------------------------------------------------------------------
_ENTRY = re.compile(r"Appointed Entry:\s*(\d+)\s+Device_Id:\s*(\d+)\s+Die_Id:\s*(\d+)\s+Die_Index:\s*(\S+)")
_FIELD = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S.*?)\s*$")
_CLOCK = re.compile(r"([A-Z0-9]+CLK):\s*(\d+)\s*MHz")


@dataclass
class VasmiInfo:
    smi_version: str | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def card_types(self) -> list[str]:
        return sorted({e["fields"]["CardType"] for e in self.entries if "CardType" in e.get("fields", {})})


def parse_vasmi(text: str) -> VasmiInfo:
    """vasmi's blocks: ``Smi version:x``, per die an ``Appointed Entry:.. Device_Id:.. Die_Id:..``
    header followed by ``#  Field Name  Value`` rows (card mode) or ``XCLK: N MHz`` clocks."""
    info = VasmiInfo()
    cur: dict[str, Any] | None = None
    for line in text.splitlines():
        m = re.match(r"^\s*Smi version\s*:\s*(\S+)", line, re.IGNORECASE)
        if m:
            info.smi_version = m.group(1)
            continue
        m = _ENTRY.search(line)
        if m:
            key = (int(m.group(2)), int(m.group(3)))
            cur = next((e for e in info.entries if (e["device_id"], e["die_id"]) == key), None)
            if cur is None:
                cur = {"entry": int(m.group(1)), "device_id": key[0], "die_id": key[1],
                       "die_index": m.group(4), "fields": {}, "clocks_mhz": {}}
                info.entries.append(cur)
            continue
        if cur is None:
            continue
        clocks = _CLOCK.findall(line)
        if clocks:
            cur["clocks_mhz"].update({k: int(v) for k, v in clocks})
            continue
        m = _FIELD.match(line)
        if m and not line.lstrip().startswith("#"):
            cur["fields"][m.group(2)] = m.group(3)
    return info
