"""Every intermediate tensor of a bmodel, for ``hrdeploy debug``: TPU-MLIR's own dump, mapped
back to the source ONNX tensor names.

A bmodel keeps only its inputs and outputs (``model_runner --dump_all_tensors`` on a static
bm1684/bm1684x bmodel returns the outputs alone, tpu_mlir 1.30.2, measured), so the dump uses
TPU-MLIR's bmodel debugger: ``bmodel_checker --dump_mode comb`` replays the bmodel's commands on
the cmodel and, at every command, reads each op's result out of the simulated memory, puts the
layer-group slices back together and dequantizes int8 values with their scales
(``bmodel_inference.npz``). It needs what the compiler knew about addresses and names — the
final MLIR and ``<bmodel>.json`` (tensor locations) — and the tpu MLIR for the ops' full shapes;
the conversion keeps those of one stage in ``debug/`` (:func:`keep_context`). The input goes in
through ``model_runner`` on the same bmodel, which writes the context's ``input_ref_data.dat``
and the runtime's own outputs, against which ``npz_tool compare`` checks the replay.

Names: TPU-MLIR's ONNX front end names each op ``<first output>_<OpType>`` (``r1_Relu``,
``/stage2/.../Add_output_0_Add``); graph inputs keep their name. model_transform folds a Relu
into the Conv/Add/... before it, so that layer's own output is not observable: it is reported
in the notes and the pair is compared under the Relu's tensor.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.kit.plan import link_or_copy
from hrdeploy.kit.toolrun import COMPILE_TIMEOUT, run_tool
from hrdeploy.target import LayerDump

from . import commands as C
from .parsers import parse_npz_compares, strip_ansi
from .toolchain import INSTALL_HINT, Toolchain

if TYPE_CHECKING:
    from hrdeploy.artifact import Artifact

DEBUG_DIR = "debug"
#: artifact file roles of the kept debug context -> file names inside the artifact
CONTEXT_FILES = {"debug_final_mlir": f"{DEBUG_DIR}/final.mlir",
                 "debug_tensor_location": f"{DEBUG_DIR}/tensor_location.json",
                 "debug_tpu_mlir": f"{DEBUG_DIR}/tpu.mlir"}
#: the stage's own bmodel, kept only when model.bmodel combines several stages (the tensor
#: locations describe the commands of one compilation)
STAGE_BMODEL = ("debug_bmodel", f"{DEBUG_DIR}/stage.bmodel")
#: ops model_transform merges a following Relu into (``do_relu``): their own output vanishes
FUSES_RELU = frozenset({"Conv", "ConvTranspose", "Add", "Sub", "Mul", "Gemm", "MatMul",
                        "BatchNormalization", "MaxPool", "AveragePool", "Concat"})
NO_LAYER_DUMP_HINT = ("the layer dump replays the bmodel on TPU-MLIR's cmodel (bmodel_checker); sophon.sail "
                      "on a device cannot expose intermediate tensors: " + INSTALL_HINT)


# -- names ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceGraph:
    """What the name mapping needs of the source ONNX: topological tensor order, each
    tensor's producer type and consumers, which Relu reads it, and the graph's inputs and
    outputs."""

    order: list[str]
    producer: dict[str, str]
    consumers: dict[str, list[str]]
    relu_of: dict[str, str]
    inputs: list[str]
    outputs: list[str]

    @classmethod
    def load(cls, onnx_path: Path) -> SourceGraph:
        import onnx

        g = onnx.load(str(onnx_path), load_external_data=False).graph
        inits = {i.name for i in g.initializer}
        inputs = [i.name for i in g.input if i.name not in inits]
        order: list[str] = list(inputs)
        producer: dict[str, str] = {}
        consumers: dict[str, list[str]] = {}
        relu_of: dict[str, str] = {}
        for node in g.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node.op_type)
            if node.op_type == "Relu":
                relu_of[node.input[0]] = node.output[0]
            for name in node.output:
                if name:
                    producer[name] = node.op_type
                    order.append(name)
        return cls(order, producer, consumers, relu_of, inputs, [o.name for o in g.output])

    def layer_name(self, tensor: str) -> str | None:
        """TPU-MLIR's op name for the op writing ``tensor`` (None: not a tensor of this graph)."""
        if tensor in self.inputs:
            return tensor
        op = self.producer.get(tensor)
        return None if op is None else f"{tensor}_{op}"

    def fused_into(self, tensor: str) -> str | None:
        """The Relu tensor that ``tensor``'s layer is merged with, if model_transform folds it
        (its sole consumer a Relu, not a graph output)."""
        if self.producer.get(tensor) not in FUSES_RELU or tensor in self.outputs:
            return None
        if self.consumers.get(tensor) != ["Relu"]:
            return None
        return self.relu_of.get(tensor)


def source_graph(onnx_path: Path) -> SourceGraph:
    return SourceGraph.load(onnx_path)


def map_to_source(dump: dict[str, np.ndarray], graph: SourceGraph) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """(tensors keyed by source name in topological order, source tensors without a dumped
    value, dumped names that are not a source tensor — casts, reloads, weights)."""
    by_layer = {graph.layer_name(t): t for t in graph.order}
    tensors: dict[str, np.ndarray] = {}
    for name, value in dump.items():
        src = by_layer.get(name)
        if src is not None:
            tensors[src] = np.ascontiguousarray(value, dtype=np.float32)
    ordered = {t: tensors[t] for t in graph.order if t in tensors}
    missing = [t for t in graph.order if t not in ordered]
    extra = [n for n in dump if by_layer.get(n) is None]
    return ordered, missing, extra


def describe_missing(missing: list[str], graph: SourceGraph, limit: int = 4) -> list[str]:
    """Notes on the source tensors TPU-MLIR has no value for: merged with their Relu, or
    folded/renamed away."""
    notes = []
    fused = [(t, graph.fused_into(t)) for t in missing if graph.fused_into(t)]
    constants = [t for t in missing if graph.producer.get(t) == "Constant"]
    other = [t for t in missing if not graph.fused_into(t) and graph.producer.get(t) != "Constant"]
    if fused:
        shown = ", ".join(f"{t} ({graph.producer[t]}) -> {r}" for t, r in fused[:limit])
        notes.append(f"{len(fused)} layer(s) merged with the Relu after them by TPU-MLIR (their own output is not "
                     f"observable; compared at the Relu): {shown}" + (" ..." if len(fused) > limit else ""))
    if constants:
        notes.append(f"{len(constants)} Constant output(s) (Resize scales, shapes) are folded into TPU-MLIR's ops: "
                     "nothing to compare")
    if other:
        shown = ", ".join(f"{t} ({graph.producer.get(t, 'input')})" for t in other[:limit])
        notes.append(f"{len(other)} source tensor(s) with no TPU-MLIR layer (folded, fused or renamed): {shown}"
                     + (" ..." if len(other) > limit else ""))
    return notes


# -- the context kept at conversion time --------------------------------------------------------

def mlir_prefix(net: str, chip: str, quantize: str) -> str:
    """model_deploy's file prefix (tpu_mlir 1.30 model_deploy.py): net, chip, mode, and
    ``_sym`` for symmetric int8."""
    prefix = f"{net}_{chip}_{quantize.lower()}"
    return prefix + "_sym" if quantize.upper() == "INT8" else prefix


def debug_stage(doc: dict[str, Any]) -> C.Stage:
    """The stage whose context is kept: the calibrating one (first size, smallest batch)."""
    stages = [C.Step.from_dict(s).stage for s in doc["steps"] if s["tool"] == "model_deploy"]
    return C.calibration_stage([s for s in stages if s is not None])


def keep_context(out: Path, doc: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]] | None:
    """Copy one stage's final MLIR, tensor locations and tpu MLIR (text files, no weights) out of
    ``work/`` before it is removed; returns (file roles, the record for the manifest), or None
    when model_deploy did not leave them (a failed or planned run)."""
    stage = debug_stage(doc)
    work = out / stage.workdir
    prefix = mlir_prefix(doc["net_name"], doc["chip"], doc["quantize"])
    bmodel = C.stage_bmodel(doc["net_name"], stage)
    sources = {"debug_final_mlir": work / f"{prefix}_final.mlir",
               "debug_tensor_location": work / f"{bmodel}.json",
               "debug_tpu_mlir": work / f"{prefix}_tpu.mlir"}
    if not all(p.is_file() for p in sources.values()):
        return None
    (out / DEBUG_DIR).mkdir(exist_ok=True)
    files = dict(CONTEXT_FILES)
    for role, src in sources.items():
        shutil.copyfile(src, out / files[role])
    if len(doc["stages"]) > 1:
        shutil.copyfile(work / bmodel, out / STAGE_BMODEL[1])
        files[STAGE_BMODEL[0]] = STAGE_BMODEL[1]
    record = {"stage": stage.key, "batch": stage.batch, "size": [stage.height, stage.width],
              "bmodel": files.get(STAGE_BMODEL[0], C.BMODEL),
              "tool": "bmodel_checker --dump_mode comb (TPU-MLIR bmodel debugger on the cmodel)"}
    return files, record


# -- the dump ------------------------------------------------------------------------------------

def _chunks(x: np.ndarray, batch: int) -> Iterable[tuple[np.ndarray, int]]:
    """Batches of the stage's size, the last padded with copies of its last row; with the
    count of real rows."""
    for i in range(0, len(x), batch):
        part = x[i:i + batch]
        real = len(part)
        if real < batch:
            part = np.concatenate([part, np.repeat(part[-1:], batch - real, axis=0)])
        yield np.ascontiguousarray(part, dtype=np.float32), real


def _tool(tc: Toolchain, argv: list[str], cwd: Path, log: Path, step: str) -> str:
    proc = run_tool(argv, step=step, log=log, cwd=cwd, env={**os.environ, **tc.env()},
                    timeout=COMPILE_TIMEOUT, tool_hint=INSTALL_HINT)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in strip_ansi(proc.stdout).splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "")
        raise UserError(f"{step} failed (exit {proc.returncode}): {last[:200]}; log: {log}")
    return proc.stdout


def replay_check(tc: Toolchain, folder: Path, dumped: Path, outputs: Path) -> dict[str, Any] | None:
    """``npz_tool compare`` of the replayed outputs against the runtime's: proof that the dump
    is the bmodel's own computation. None when the two files share no tensor."""
    text = _tool(tc, ["npz_tool", "compare", str(dumped), str(outputs), "-v"], folder,
                 folder / "npz_tool_compare.log", "npz_tool compare")
    blocks = parse_npz_compares(f"[Running]: npz_tool.py compare {dumped.name} {outputs.name}\n" + text)
    if not blocks or not blocks[0]["tensors"]:
        return None
    b = blocks[0]
    return {"passed": b["passed"], "tensors": len(b["tensors"]), **(b["min_similarity"] or {})}


def dump_layers(artifact: Artifact, inputs: np.ndarray, source: Path, workdir: Path, tc: Toolchain | None,
                log: Callable[[str], None] = print) -> LayerDump:
    """Run the artifact's debug stage on ``inputs`` under bmodel_checker, one stage batch at a
    time, and return every layer keyed by ``source``'s tensor names."""
    if tc is None:
        raise ToolchainMissing("TPU-MLIR is not installed", NO_LAYER_DUMP_HINT)
    conv = artifact.manifest.get("conversion") or {}
    info = conv.get("layer_debug")
    if not info:
        raise UserError(f"{artifact.path} keeps no TPU-MLIR debug context (final MLIR and tensor locations)",
                        "convert it again with this hrdeploy version (it keeps them in debug/)")
    bmodel = artifact.file(STAGE_BMODEL[0], required=False) or artifact.file("model")
    ctx = {role: artifact.file(role) for role in CONTEXT_FILES}
    x = np.asarray(inputs, dtype=np.float32)
    batch, (height, width) = int(info["batch"]), info["size"]
    if x.ndim != 4 or tuple(x.shape[2:]) != (height, width):
        raise UserError(f"the layer dump runs the {info['stage']} stage of this bmodel: inputs must be "
                        f"N x C x {height} x {width}, got {list(x.shape)}")
    input_name = conv.get("input_name") or (artifact.manifest.get("input") or {}).get("name") or "image"
    graph = source_graph(source)
    workdir.mkdir(parents=True, exist_ok=True)
    parts: list[tuple[dict[str, np.ndarray], int]] = []
    checks: list[dict[str, Any]] = []
    for k, (chunk, real) in enumerate(_chunks(x, batch)):
        folder = workdir / f"sophon-dump-{k:03d}"
        folder.mkdir(exist_ok=True)
        np.savez(folder / "input.npz", **{input_name: chunk})
        link_or_copy(bmodel, folder / "net.bmodel")
        log(f"sophon: layer dump {k + 1}/{-(-len(x) // batch)} ({info['stage']}): model_runner + bmodel_checker on the cmodel")
        # model_runner writes the debugger's context folder net/ (compilation.bmodel, input_ref_data.dat)
        _tool(tc, ["model_runner", "--input", "input.npz", "--model", "net.bmodel", "--output", "outputs.npz"],
              folder, folder / "model_runner.log", "model_runner")
        context = folder / "net"
        shutil.copyfile(ctx["debug_final_mlir"], context / "final.mlir")
        shutil.copyfile(ctx["debug_tensor_location"], context / "tensor_location.json")
        shutil.copyfile(ctx["debug_tpu_mlir"], folder / "tpu.mlir")
        _tool(tc, ["bmodel_checker", "net", "tpu.mlir", "--dump_mode", "comb", "--no_interactive", "--quiet"],
              folder, folder / "bmodel_checker.log", "bmodel_checker")
        dumped = context / "bmodel_inference.npz"
        if not dumped.is_file():
            raise UserError(f"bmodel_checker wrote no {dumped.name}; log: {folder / 'bmodel_checker.log'}")
        with np.load(dumped) as z:
            parts.append(({name: z[name] for name in z.files}, real))
        if k == 0:  # once: the replay is deterministic, and each tool start costs seconds
            check = replay_check(tc, folder, dumped, folder / "outputs.npz")
            if check:
                checks.append(check)
    merged = _merge(parts, batch)
    tensors, missing, extra = map_to_source(merged, graph)
    if not tensors:
        raise UserError(f"none of the {len(merged)} tensors bmodel_checker dumped is named like a tensor of {source}",
                        "give --source the ONNX file this artifact was converted from (its source.onnx)")
    notes = [(f"bmodel_checker replayed the {info['stage']} stage command by command on the cmodel "
              f"({len(x)} input(s), {len(parts)} run(s)); int8 tensors dequantized with their scales")]
    if checks:
        cos = min(c.get("cosine") or 0.0 for c in checks)
        ok = all(c["passed"] for c in checks)
        notes.append(f"npz_tool compare, replayed outputs vs model_runner's (first run): "
                     f"{'PASSED' if ok else 'FAILED'} (min cosine {cos:.6f})")
    notes += describe_missing(missing, graph)
    if extra:
        notes.append(f"{len(extra)} dumped TPU-MLIR tensor(s) are not source tensors (casts, reloads): "
                     + ", ".join(extra[:3]) + (" ..." if len(extra) > 3 else ""))
    chip = conv.get("chip") or ""
    return LayerDump(tensors=tensors, producers=producers(tensors, graph, ctx["debug_tpu_mlir"].read_text()),
                     label=f"TPU-MLIR {tc.version} bmodel_checker, cmodel {chip} ({info['stage']})", notes=notes)


def producers(tensors: Iterable[str], graph: SourceGraph, tpu_mlir: str) -> dict[str, str]:
    """Source tensor -> the TPU-MLIR layer computing it with its lowered type
    ("r1_Relu (Conv2D:uint8)"): shows a Conv merged with its Relu, and which layers a
    quantize table kept in float."""
    types = layer_types(tpu_mlir)
    out = {}
    for t in tensors:
        name = graph.layer_name(t)
        info = types.get(name or "")
        if name and info:
            # one token in the brackets: the core's table shows the last word there as the op
            out[t] = f"{name} ({info['op'].split('.')[-1]}:{info['dtype']})"
    return out


def _merge(parts: list[tuple[dict[str, np.ndarray], int]], batch: int) -> dict[str, np.ndarray]:
    """One array per tensor over all runs, padding rows dropped; tensors without the batch as
    first axis (none in the graphs hrdeploy exports) only from a single run."""
    if len(parts) == 1:
        d, real = parts[0]
        return {k: (v[:real] if v.ndim and v.shape[0] == batch else v) for k, v in d.items()}
    out: dict[str, np.ndarray] = {}
    for name in parts[0][0]:
        pieces = [d.get(name) for d, _ in parts]
        if any(p is None or not p.ndim or p.shape[0] != batch for p in pieces):
            continue
        out[name] = np.concatenate([p[:real] for p, (_, real) in zip(pieces, parts)])  # type: ignore[index]
    return out


_LOC_DEF = re.compile(r'^#(loc\d+) = loc\("([^"]*)"\)')
_OP = re.compile(r'^\s*(%[^=]+?)\s*=\s*"(?P<op>[a-z]+\.[A-Za-z0-9_]+)".*->\s*(?P<res>.+?)\s+loc\((?P<loc>#loc\d+|"[^"]*")\)\s*$')


def layer_types(mlir_text: str) -> dict[str, dict[str, str]]:
    """Op name -> {"op": "tpu.Conv2D", "dtype": "int8"|"uint8"|"f32"|"f16"|"bf16"|...} of a tpu
    MLIR file: what each layer was lowered to (the first result's element type)."""
    locs = {}
    for line in mlir_text.splitlines():
        m = _LOC_DEF.match(line)
        if m:
            locs["#" + m.group(1)] = m.group(2)
    out: dict[str, dict[str, str]] = {}
    for line in mlir_text.splitlines():
        m = _OP.match(line)
        if not m:
            continue
        loc = m["loc"]
        name = loc.strip('"') if loc.startswith('"') else locs.get(loc)
        if name is None:
            continue
        out[name] = {"op": m["op"], "dtype": element_type(m["res"])}
    return out


def element_type(result: str) -> str:
    """The element type of the first tensor in an MLIR result type string."""
    q = re.search(r"quant\.uniform<([a-z]+\d+)", result)
    if q:
        return {"i8": "int8", "u8": "uint8", "i16": "int16", "u16": "uint16"}.get(q.group(1), q.group(1))
    if "quant.calibrated<f32" in result:
        return "f32"
    m = re.search(r"tensor<(?:[0-9?]+x)*([a-z]+[0-9]*)", result)
    return m.group(1) if m else "unknown"
