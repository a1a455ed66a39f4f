"""Layer-wise comparison of a converted model with its source ONNX graph: the figures of
``hrdeploy debug`` and the ranking ``convert --accuracy-budget`` keeps layers in float by.

Every target returns the converted model's intermediate tensors keyed by the *source* graph's
tensor names (:class:`hrdeploy.target.LayerDump`); this module runs the source with all its
intermediate tensors exposed (onnxruntime's ``qdq_loss_debug`` does the graph surgery), and
compares the two per layer in the source's topological order.

Why two orderings: the first layer under the threshold is where a loss becomes *visible*, but
errors propagate, so every layer after a bad one looks bad too. ``added_noise_db`` is the noise
a layer adds itself: its noise-to-signal ratio minus the worst of its inputs' (relative noise
passes through a layer roughly unchanged), in dB of its own signal. Ranking by it pins a loss
where it *starts*: a corrupted convolution adds noise near 0 dB (as much noise as signal), a
well-quantized int8 layer -25 to -40 dB, and the layers after a bad one almost none.
``origin`` is the first layer whose own added noise alone breaks the threshold (cosine ``c``
allows a noise-to-signal ratio of about ``2 (1 - c)``).
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import UserError
from .target import LayerDump

#: SNR of an exact copy is infinite; capped so that "lost dB" stays a finite, sortable number
#: (float32 rounding noise sits near 140 dB, int8 quantisation near 20-40 dB)
SQNR_CAP_DB = 150.0

#: the default "first diverging layer" threshold per precision: an fp32 build reproduces every
#: layer to rounding (>= 0.99999 measured on HRNet-W18-C), fp16 to ~1e-3, int8 to ~1e-2
DEFAULT_THRESHOLDS = {"fp32": 0.99999, "fp16": 0.999, "bf16": 0.995, "int8": 0.99}


def default_threshold(precision: str) -> float:
    return DEFAULT_THRESHOLDS.get(precision, 0.99)


# -- the source graph ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphLayer:
    """One node of the source graph, by the tensor it produces (a layer's name in every table)."""

    tensor: str
    node: str
    op_type: str
    inputs: tuple[str, ...]


def graph_layers(onnx_path: Path) -> list[GraphLayer]:
    """Every node output of the source graph in topological order (ONNX requires node order
    to be topological), with the node's activation inputs (initializers left out)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        ins = tuple(i for i in node.input if i and i not in inits)
        for out in node.output:
            if out:
                layers.append(GraphLayer(out, node.name or out, node.op_type, ins))
    return layers


#: ops whose outputs are not float activations (indices, masks, shapes, quantized codes)
_NON_FLOAT_OPS = {"Shape", "Size", "ArgMax", "ArgMin", "NonZero", "Equal", "Less", "Greater", "LessOrEqual",
                  "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf", "QuantizeLinear",
                  "DynamicQuantizeLinear", "NonMaxSuppression"}
_FLOAT_TYPES = (1, 10, 16)  # TensorProto FLOAT, FLOAT16, BFLOAT16


def _output_types(model: Any) -> dict[str, int]:
    """Element type of every node output, from the graph's own type information where it has
    it, else propagated along the nodes. An optimised graph (onnxruntime's FusedConv, QDQ
    graphs) has contrib ops neither onnx's nor onnxruntime's shape inference types, which is
    why onnxruntime's ``qdq_loss_debug`` augmenter finds no tensors in it."""
    g = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.value_info, *g.output]}
    types.update({i.name: i.data_type for i in g.initializer})
    for node in g.node:
        for k, out in enumerate(node.output):
            if not out or types.get(out):
                continue
            if node.op_type in _NON_FLOAT_OPS or (k > 0 and node.op_type in ("TopK", "MaxPool")):
                types[out] = 0
            elif node.op_type == "Cast":
                types[out] = next(a.i for a in node.attribute if a.name == "to")
            elif node.op_type == "Constant":
                types[out] = next((a.t.data_type for a in node.attribute if a.name == "value"), 0)
            elif node.op_type == "DequantizeLinear":
                types[out] = types.get(node.input[1], 1) if len(node.input) > 1 else 1
            else:
                known = [types.get(i, 0) for i in node.input if i]
                floats = [t for t in known if t in _FLOAT_TYPES]
                types[out] = floats[0] if floats else (known[0] if known else 0)
    return types


def expose_all(onnx_path: Path, out_path: Path) -> None:
    """Write a copy of ``onnx_path`` with every float intermediate tensor as a graph output
    (the graph surgery of onnxruntime's ``qdq_loss_debug``, with the element types propagated
    so that optimised and QDQ graphs work too)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_path))
    types = _output_types(model)
    present = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if out and out not in present and types.get(out) in _FLOAT_TYPES:
                model.graph.output.append(helper.make_tensor_value_info(out, types[out], None))
                present.add(out)
    onnx.save(model, str(out_path))


def run_exposed(exposed: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run a model written by :func:`expose_all` on each input and return every intermediate
    tensor as an (N, size) float32 array. Graph optimisations are off, as in onnxruntime's
    ``collect_activations``: an optimised session would fuse away the very tensors asked for."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(exposed), sess_options=so, providers=["CPUExecutionProvider"])
        inp = session.get_inputs()[0]
        dtype = np.float16 if "float16" in inp.type else np.float32
        names = [o.name for o in session.get_outputs()]
        per_sample = [session.run(names, {inp.name: x[None].astype(dtype)}) for x in inputs]
    except Exception as e:  # onnxruntime raises its own types for a graph it cannot run
        raise UserError(f"onnxruntime cannot run {exposed.name} with its layers exposed: "
                        f"{' '.join(str(e).split())[:200]}") from None
    return {n: np.stack([np.asarray(outs[i], dtype=np.float32).reshape(-1) for outs in per_sample])
            for i, n in enumerate(names)}


def source_tensors(onnx_path: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every float intermediate tensor of the source ONNX on ``inputs`` (N, size) float32, in
    topological order, run by onnxruntime fp32."""
    with tempfile.TemporaryDirectory(prefix="hrdeploy-layers-") as tmp:
        exposed = Path(tmp) / "exposed.onnx"
        expose_all(Path(onnx_path), exposed)
        acts = run_exposed(exposed, inputs)
    order = {layer.tensor: i for i, layer in enumerate(graph_layers(Path(onnx_path)))}
    return dict(sorted(acts.items(), key=lambda kv: order.get(kv[0], len(order))))


# -- the figures ---------------------------------------------------------------------------------
def cosine_min(ref: np.ndarray, test: np.ndarray) -> float:
    """Worst per-sample cosine similarity of two (N, size) arrays; two all-zero samples agree."""
    a = ref.reshape(len(ref), -1).astype(np.float64)
    b = test.reshape(len(test), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.sum(a * b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(all="ignore"):
        cos = np.where(both_zero, 1.0, dot / (na * nb))
    cos = np.where(np.isfinite(cos), cos, -1.0)
    return float(np.min(cos))


def max_rel(ref: np.ndarray, test: np.ndarray) -> float:
    """max|test - ref| relative to max|ref| (the project's one definition, see parity)."""
    peak = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(test.astype(np.float64) - ref))) if ref.size else 0.0
    if not math.isfinite(err):
        return float("inf")
    return err / peak if peak > 0 else (0.0 if err == 0 else float("inf"))


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantisation-noise ratio in dB, capped at :data:`SQNR_CAP_DB`."""
    r = ref.astype(np.float64)
    noise = float(np.sum((test.astype(np.float64) - r) ** 2))
    signal = float(np.sum(r ** 2))
    if not math.isfinite(noise):
        return -SQNR_CAP_DB
    if noise == 0:
        return SQNR_CAP_DB
    if signal == 0:
        return -SQNR_CAP_DB
    return float(min(SQNR_CAP_DB, max(-SQNR_CAP_DB, 10 * math.log10(signal / noise))))


def noise_budget_db(threshold: float) -> float:
    """The noise-to-signal ratio (dB) a cosine of ``threshold`` allows: cos ~ 1 - NSR / 2."""
    return 10 * math.log10(max(2 * (1 - threshold), 1e-15))


def added_noise_db(sqnr_in: float, sqnr_out: float) -> float:
    """Noise a layer adds itself, relative to its own signal: NSR_out - NSR_in, in dB."""
    added = 10 ** (-sqnr_out / 10) - 10 ** (-sqnr_in / 10)
    return 10 * math.log10(added) if added > 1e-15 else -SQNR_CAP_DB


@dataclass
class LayerRow:
    index: int
    tensor: str
    node: str
    op_type: str
    cosine: float | None
    max_rel: float | None
    sqnr_db: float | None
    #: the noise this layer adds itself, in dB of its signal (-inf: none; 0: as much as signal)
    added_noise_db: float | None
    elements: int = 0
    #: the converted model's layer computing this tensor, when the target said ("name (Op)")
    converted: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.__dict__.items()}


@dataclass
class LayerReport:
    rows: list[LayerRow]
    threshold: float
    label: str
    reference: str
    notes: list[str] = field(default_factory=list)
    #: source tensors with no counterpart in the converted model (fused away or renamed)
    unmatched: list[str] = field(default_factory=list)
    inputs: int = 0

    @property
    def first_below(self) -> LayerRow | None:
        for r in self.rows:
            if r.cosine is not None and r.cosine < self.threshold:
                return r
        return None

    @property
    def ranked(self) -> list[LayerRow]:
        """Layers by the error they add, worst first (those without a figure last)."""
        return sorted(self.rows, key=lambda r: (r.added_noise_db is None, -(r.added_noise_db or -1e9), r.index))

    @property
    def origin(self) -> LayerRow | None:
        """The first layer (topological) whose own added noise alone breaks the threshold."""
        limit = noise_budget_db(self.threshold)
        for r in self.rows:
            if r.added_noise_db is not None and r.added_noise_db > limit:
                return r
        return None

    @property
    def min_cosine(self) -> float | None:
        vals = [r.cosine for r in self.rows if r.cosine is not None]
        return min(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        first = self.first_below
        origin = self.origin
        return {"threshold": self.threshold, "label": self.label, "reference": self.reference,
                "inputs": self.inputs, "layers_compared": len(self.rows),
                "first_below_threshold": first.to_dict() if first else None,
                "origin": origin.to_dict() if origin else None,
                "noise_budget_db": noise_budget_db(self.threshold),
                "min_cosine": self.min_cosine,
                "ranked_by_added_error": [r.tensor for r in self.ranked[:20]],
                "layers": [r.to_dict() for r in self.rows],
                "unmatched_source_tensors": self.unmatched, "notes": self.notes}


def compare_layers(onnx_path: Path, source: Mapping[str, np.ndarray], dump: LayerDump,
                   threshold: float = 0.99, reference: str = "source ONNX on onnxruntime fp32") -> LayerReport:
    """Compare ``dump`` (the converted model) with ``source`` (from :func:`source_tensors`)
    layer by layer in the source's topological order.

    A layer's ``added_noise_db`` is its noise-to-signal ratio minus its worst input's; an input
    the converted model does not expose inherits the worst SQNR of its own inputs (so a fused-
    away tensor does not hide where a loss starts), and the network input is exact."""
    layers = graph_layers(Path(onnx_path))
    effective: dict[str, float] = {}
    rows: list[LayerRow] = []
    unmatched: list[str] = []

    def incoming(layer: GraphLayer) -> float:
        vals = [effective.get(i, SQNR_CAP_DB) for i in layer.inputs]
        return min(vals) if vals else SQNR_CAP_DB

    for layer in layers:
        before = incoming(layer)
        t = layer.tensor
        row: LayerRow | None = None
        if t in dump.tensors and t in source:
            ref, got = source[t], np.asarray(dump.tensors[t], dtype=np.float32)
            got = got.reshape(len(got), -1) if got.ndim > 1 else got[None]
            if got.shape != ref.shape:
                if got.size == ref.size:
                    got = got.reshape(ref.shape)
                else:
                    unmatched.append(t)
                    effective[t] = before
                    continue
            s = sqnr_db(ref, got)
            row = LayerRow(0, t, layer.node, layer.op_type, cosine_min(ref, got), max_rel(ref, got), s,
                           added_noise_db(before, s), int(ref.shape[1]))
        elif t in dump.figures:
            fig = dump.figures[t]
            s = fig.get("sqnr_db")
            row = LayerRow(0, t, layer.node, layer.op_type, fig.get("cosine"), fig.get("max_rel"), s,
                           added_noise_db(before, s) if s is not None else None)
        if row is None:
            if t in source:
                unmatched.append(t)
            effective[t] = before
            continue
        row.index = len(rows)
        row.converted = dump.producers.get(t, "")
        effective[t] = row.sqnr_db if row.sqnr_db is not None else before
        rows.append(row)
    if not rows:
        raise UserError("no layer of the converted model could be matched to the source graph",
                        "is --source the ONNX file this artifact was converted from?")
    n = next(iter(source.values())).shape[0] if source else 0
    return LayerReport(rows, threshold, dump.label, reference, list(dump.notes), unmatched, n)


def worst_rows(report: LayerReport, count: int = 12) -> list[LayerRow]:
    """The rows of the terminal table: the first layer below the threshold, then the layers
    adding the most error, in topological order."""
    chosen = {r.index: r for r in report.ranked[:count]}
    first = report.first_below
    if first is not None:
        chosen[first.index] = first
    return [chosen[i] for i in sorted(chosen)]


def plot(report: LayerReport, path: Path, title: str = "") -> None:
    """PNG of cosine (and lost dB) along the depth with the threshold line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r.index for r in report.rows if r.cosine is not None]
    cos = [r.cosine for r in report.rows if r.cosine is not None]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.plot(xs, cos, ".-", lw=0.8, ms=3, label="cosine vs source")
    ax.axhline(report.threshold, color="red", ls="--", lw=1, label=f"threshold {report.threshold:g}")
    first = report.first_below
    if first is not None:
        ax.axvline(first.index, color="orange", lw=1)
        ax.annotate(f"first below: {first.tensor[-40:]}", (first.index, report.threshold),
                    textcoords="offset points", xytext=(5, -15), fontsize=8, color="darkorange")
    origin = report.origin
    if origin is not None:
        ax.axvline(origin.index, color="red", lw=1)
        ax.annotate(f"first diverging: {origin.tensor[-40:]}", (origin.index, 0.0),
                    textcoords="offset points", xytext=(5, 0), fontsize=8, color="red")
    ax.set_ylabel("cosine (worst input)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    added = [(r.index, r.added_noise_db) for r in report.rows if r.added_noise_db is not None]
    if added:
        floor = -SQNR_CAP_DB / 2
        ax2.plot([a for a, _ in added], [max(floor, b) for _, b in added], ".", ms=3, color="tab:purple")
        ax2.axhline(noise_budget_db(report.threshold), color="red", ls="--", lw=1)
    ax2.set_ylabel("noise added (dB)")
    ax2.set_xlabel("layer (source graph, topological order)")
    ax2.grid(alpha=0.3)
    fig.suptitle(title or report.label, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def match_suffixed(source_names: Sequence[str], available: Mapping[str, np.ndarray],
                   suffixes: Sequence[str]) -> dict[str, np.ndarray]:
    """Pick, for each source tensor name, the first of ``name + suffix`` present in
    ``available`` (e.g. onnxruntime's ``_DequantizeLinear_Output`` before the bare name): the
    renaming a target's toolchain applies, undone."""
    got: dict[str, np.ndarray] = {}
    for name in source_names:
        for suffix in suffixes:
            if name + suffix in available:
                got[name] = available[name + suffix]
                break
    return got
