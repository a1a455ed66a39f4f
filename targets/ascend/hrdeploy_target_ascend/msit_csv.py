"""The per-layer table ``msit debug compare`` (formerly ``ait debug compare``) writes:
``{output}/{timestamp}/result_{timestamp}.csv``, one row per compared tensor of the .om.

Where the format comes from (public sources, read for this file):

* The column set and order: msaccucmp (CANN ``tools/operator_cmp/compare``), which msit calls;
  ``vector_cmp/fusion_manager/compare_result.py``: ``get_result_title`` builds
  ``Index + op header + Shape [+ OverFlow] + algorithms + CompareFailReason`` and
  ``FusionOpComResult.get_result`` fills ``Index, OpType, NPUDump, DataType, Address,
  GroundTruth, DataType, Address, TensorIndex`` and drops the GroundTruth ``Address`` when the
  golden side is .npy (an ONNX run). The CANN page "Parameters in a Complete Model Comparison
  Result" (atlasaccuracy_16_0064) names every column.
* ``GroundTruth``: the ONNX node names ATC fused into the NPU op, joined by ``,``
  (``','.join(fusion_op.attr.original_op_names)``), ``*`` for an op with no counterpart
  (TransData...). ``TensorIndex``: ``<NPU op>:output:<i>`` / ``<NPU op>:input:<i>``.
* The sample row in msit's docs (``msit/examples/cli/debug/compare/result_analyse/README.md``,
  recorded in tests/fixtures/toolchains/msit_debug_compare_result_analyse_doc.md):
  ``Sub | Sub_26Mul_28 | float16 | NaN | Sub_26,Mul_28 | float32 | Sub_26Mul_28:output:0 |
  [1,1,1,108] | NO | 1 | ...``.
* msit's own analyser (``net_compare/analyser.py``) skips rows whose OpType is ``TransData``,
  GroundTruth ``*`` or DataType ``NaN``, and NaN/inf values; so does this parser.
* ``RelativeEuclideanDistance`` is ``sqrt(sum((my - gt)^2)) / sqrt(sum(gt^2))`` (msaccucmp's
  ``relative_euclidean_distance.py``), so the SQNR hrdeploy reports is ``-20 log10(RED)``.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

#: the algorithm columns msaccucmp writes by default, in its order
ALGORITHMS = ("CosineSimilarity", "MaxAbsoluteError", "AccumulatedRelativeError", "RelativeEuclideanDistance",
              "KullbackLeiblerDivergence", "StandardDeviation", "MeanAbsoluteError", "RootMeanSquareError",
              "MaxRelativeError", "MeanRelativeError")
#: the header msit writes for an ONNX golden model (GroundTruth's Address dropped), with the
#: overflow column msit turns on
HEADER = ("Index", "OpType", "NPUDump", "DataType", "Address", "GroundTruth", "DataType", "TensorIndex", "Shape",
          "OverFlow", *ALGORITHMS, "CompareFailReason")
REQUIRED = ("OpType", "NPUDump", "GroundTruth", "TensorIndex", "CosineSimilarity")
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_TENSOR_INDEX = re.compile(r"^(?P<op>.*):(?P<kind>input|output):(?P<slot>\d+)$")
#: SQNR of an exact match (RED = 0); the same cap hrdeploy.layerwise uses
SQNR_CAP_DB = 150.0


@dataclass
class CompareRow:
    """One tensor of the table."""

    index: str
    op_type: str
    npu_op: str
    npu_dtype: str
    #: the ONNX node names fused into the NPU op, empty for ``*``
    ground_truth: list[str]
    golden_dtype: str
    kind: str
    slot: int
    shape: str
    values: dict[str, float | None] = field(default_factory=dict)
    fail_reason: str = ""

    @property
    def comparable(self) -> bool:
        """What msit's analyser keeps: a real NPU op with a counterpart and numbers."""
        return (self.op_type != "TransData" and bool(self.ground_truth) and self.npu_dtype != "NaN"
                and self.values.get("CosineSimilarity") is not None)


class CompareTableError(ValueError):
    """The text is not an msit compare table."""


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _columns(header: Sequence[str]) -> list[str]:
    """Column keys: the second ``DataType`` (after GroundTruth) is the golden side's; a second
    ``Address`` (NPU-vs-NPU tables) the golden side's too."""
    keys: list[str] = []
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        key = name
        if name in seen and name in ("DataType", "Address"):
            key = "Golden" + name
        elif name == "Overflow":  # the docs' spelling; msaccucmp writes OverFlow
            key = "OverFlow"
        seen.add(name)
        keys.append(key)
    return keys


def rows_from_records(records: Iterable[Mapping[str, str]]) -> list[CompareRow]:
    """Table records (column key -> cell text, keys as :func:`_columns` names them) to rows."""
    rows = []
    for rec in records:
        m = _TENSOR_INDEX.match((rec.get("TensorIndex") or "").strip())
        if m is None:
            continue  # an op that failed before any tensor was compared carries no TensorIndex
        gt = (rec.get("GroundTruth") or "").strip()
        rows.append(CompareRow(
            index=(rec.get("Index") or "").strip(), op_type=(rec.get("OpType") or "").strip(),
            npu_op=(rec.get("NPUDump") or "").strip(), npu_dtype=(rec.get("DataType") or "").strip(),
            ground_truth=[] if gt in ("", "*") else [n.strip() for n in gt.split(",") if n.strip()],
            golden_dtype=(rec.get("GoldenDataType") or "").strip(), kind=m.group("kind"),
            slot=int(m.group("slot")), shape=(rec.get("Shape") or "").strip(),
            values={a: _number(rec.get(a, "")) for a in ALGORITHMS if a in rec},
            fail_reason=(rec.get("CompareFailReason") or "").strip()))
    return rows


def parse_compare_csv(text: str) -> list[CompareRow]:
    """Every row of a ``result_*.csv``; raises :class:`CompareTableError` when the header lacks
    a column hrdeploy needs."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise CompareTableError("the file is empty") from None
    keys = _columns(header)
    missing = [c for c in REQUIRED if c not in keys]
    if missing:
        raise CompareTableError(f"no {', '.join(missing)} column (header: {','.join(header)[:120]})")
    return rows_from_records(dict(zip(keys, cells)) for cells in reader if cells)


def sqnr_from_red(red: float | None) -> float | None:
    """SQNR in dB from msaccucmp's relative Euclidean distance (RED = ||my - gt|| / ||gt||)."""
    if red is None:
        return None
    if red <= 0:
        return SQNR_CAP_DB
    return max(-SQNR_CAP_DB, min(SQNR_CAP_DB, -20.0 * math.log10(red)))


@dataclass
class GraphNode:
    """What the mapping needs of one node of the source ONNX graph."""

    name: str
    outputs: tuple[str, ...]
    order: int


def graph_nodes(onnx_path: Any) -> dict[str, GraphNode]:
    """Node name -> node of the source graph (ATC's original op names are these names)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {n.name: GraphNode(n.name, tuple(o for o in n.output if o), i)
            for i, n in enumerate(model.graph.node) if n.name}


@dataclass
class TensorFigures:
    """Per source tensor: what one table says about it, before the runs are combined."""

    tensor: str
    npu_op: str
    op_type: str
    fused: list[str]
    cosine: float | None
    max_abs: float | None
    sqnr_db: float | None


def map_rows(rows: Sequence[CompareRow], nodes: Mapping[str, GraphNode]) -> tuple[list[TensorFigures], list[str]]:
    """The output rows of a table keyed by the source tensor each compares against.

    A fused NPU op's output is the output of the last of its ONNX nodes (the fusion's exit, the
    one latest in the graph's topological order); ATC records that node as the tensor's origin
    (``_datadump_origin_name``), which is what msaccucmp compares against. Returns the figures
    and the GroundTruth names not found in the source graph."""
    out: list[TensorFigures] = []
    unknown: list[str] = []
    # dump file names allow only [A-Za-z0-9_-] in op names (CANN's naming rule), so a table may
    # carry "/stem/conv/Conv" as "_stem_conv_Conv": accept that spelling where it is unambiguous
    alias: dict[str, GraphNode | None] = {}
    for name, node in nodes.items():
        key = _SAFE.sub("_", name)
        alias[key] = None if key in alias and alias[key] is not node else node

    def lookup(name: str) -> GraphNode | None:
        return nodes.get(name) or alias.get(name) or alias.get(_SAFE.sub("_", name))

    for row in rows:
        if row.kind != "output" or not row.comparable:
            continue
        known = [n for n in (lookup(g) for g in row.ground_truth) if n is not None]
        unknown += [g for g in row.ground_truth if lookup(g) is None]
        if not known:
            continue
        exit_node = max(known, key=lambda n: n.order)
        if not exit_node.outputs:
            continue
        tensor = exit_node.outputs[row.slot] if row.slot < len(exit_node.outputs) else exit_node.outputs[0]
        out.append(TensorFigures(tensor, row.npu_op, row.op_type, row.ground_truth, row.values.get("CosineSimilarity"),
                                 row.values.get("MaxAbsoluteError"),
                                 sqnr_from_red(row.values.get("RelativeEuclideanDistance"))))
    return out, sorted(set(unknown))
