"""Mixed precision on Sophon: ``request.keep_float`` (source ONNX tensor names) as a TPU-MLIR
quantize table, and the check that model_deploy honoured it.

A quantize table is one ``<op name> <mode>`` per line (``#`` comments), read by model_deploy
``--quantize_table``; op names are TPU-MLIR's (``<first output>_<OpType>``, see
:mod:`.layers`). model_deploy ignores names it does not know without a word (tpu_mlir 1.30.2,
measured), so after compiling, the tpu MLIR is read back and each kept layer's lowered type
is recorded: a layer that is still int8 is reported, not silently assumed float.

The mode is F32 on both chips: BM1684 has no float16 units, and on BM1684X F32 is the
reference precision the budget search compares against.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hrdeploy.errors import UserError

from .layers import SourceGraph, layer_types

MODE = "F32"
FLOAT_TYPES = frozenset({"f32", "f16", "bf16"})


def table_layers(graph: SourceGraph, keep_float: Sequence[str]) -> list[dict[str, str]]:
    """One entry per kept tensor: ``{"tensor", "layer"}`` (the TPU-MLIR op computing it: for a
    Conv/Add merged with the Relu after it, that Relu's op, which holds both)."""
    unknown = [t for t in keep_float if graph.layer_name(t) is None]
    if unknown:
        raise UserError(f"keep-float names {len(unknown)} tensor(s) that are not in the source ONNX graph: "
                        + ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else ""),
                        "name node outputs of the exported model (hrdeploy debug lists them)")
    entries = []
    for t in dict.fromkeys(keep_float):  # keeps order, drops repeats
        relu = graph.fused_into(t)
        layer = graph.layer_name(relu) if relu else graph.layer_name(t)
        assert layer is not None
        entries.append({"tensor": t, "layer": layer})
    return entries


def table_text(entries: Sequence[dict[str, str]], user_table: str | None = None, mode: str = MODE) -> str:
    """The table model_deploy reads: the user's own ``--quantize-table`` lines first, then one
    line per kept layer not already listed there."""
    lines = ["# TPU-MLIR quantize table written by hrdeploy (op_name quantize_mode)"]
    listed: set[str] = set()
    if user_table:
        lines.append("# from --quantize-table")
        for raw in user_table.splitlines():
            line = raw.strip()
            lines.append(line)
            if line and not line.startswith("#"):
                listed.add(line.split()[0])
    if entries:
        lines.append("# kept in float (mixed precision); each after the source ONNX tensor it computes")
    for e in entries:
        if e["layer"] not in listed:  # comments on lines of their own: the table has no inline ones
            listed.add(e["layer"])
            lines += [f"# {e['tensor']}", f"{e['layer']} {mode}"]
    return "\n".join(lines) + "\n"


def read_table(text: str) -> dict[str, str]:
    """Layer -> mode of a quantize table (comments and blank lines skipped)."""
    out = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            parts = line.split()
            if len(parts) != 2:
                raise UserError(f"quantize table line {raw.strip()!r} is not 'op_name mode'")
            out[parts[0]] = parts[1].upper()
    return out


def write_table(path: Path, entries: Sequence[dict[str, str]], user_table: Path | None = None) -> None:
    text = table_text(entries, user_table.read_text() if user_table else None)
    read_table(text)  # a malformed user table is refused here, not deep inside model_deploy
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def verify(entries: Sequence[dict[str, str]], tpu_mlir: Path, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Each entry with ``compiled``: the type model_deploy lowered its layer to (None: no such
    op in the tpu MLIR); a layer not in float is reported through ``log``."""
    types = layer_types(tpu_mlir.read_text())
    out = []
    for e in entries:
        t = types.get(e["layer"])
        out.append({**e, "compiled": t["dtype"] if t else None, "op": t["op"] if t else None})
    missed = [e for e in out if e["compiled"] not in FLOAT_TYPES]
    if missed:
        log(f"warning: {len(missed)} layer(s) of the quantize table are not float in the compiled model: "
            + ", ".join(f"{e['layer']} ({e['compiled'] or 'no such op'})" for e in missed[:3]))
    return out
