"""The Sophon side of ``hrdeploy debug`` and of mixed precision, without the toolchain: TPU-MLIR
name mapping, the quantize table written from ``keep_float`` into a plan, the read-back of a
tpu MLIR's lowered types, the debug context kept from ``work/`` and the refusals of the dump."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hrdeploy.artifact import Artifact
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy_target_sophon import commands as C
from hrdeploy_target_sophon import layers as L
from hrdeploy_target_sophon import quantize_table as QT
from hrdeploy_target_sophon import target as T

# lines of the tpu MLIR model_deploy wrote for the tiny network (tpu_mlir 1.30.2, INT8 with a
# quantize table keeping c3_Conv in F32; long attribute lists cut except on the c3 line)
TPU_MLIR = """\
#loc = loc(unknown)
module @tiny attributes {module.chip = "bm1684x", module.mode = "INT8"} {
  func.func @main(%arg0: tensor<1x3x32x32xf32> loc(unknown)) -> tensor<1x10xf32> {
    %5 = "tpu.Conv2D"(%2, %3, %4)  : (tensor<1x3x32x32x!quant.uniform<i8:f32, 0.02495866377952756>>, tensor<8x3x3x3xsi8>, tensor<1x8x1x1xi32>) -> tensor<1x8x16x16x!quant.uniform<u8:f32, 0.019913970588235293>> loc(#loc5)
    %9 = "tpu.Cast"(%8) {extra = 0 : i64} : (tensor<1x16x8x8x!quant.uniform<u8:f32, 0.025867385490196078>>) -> tensor<1x16x8x8xf32> loc(#loc9)
    %12 = "tpu.Conv2D"(%9, %10, %11) {coeff_merged = false, dilations = [1, 1], do_relu = false, quant_mode = #tpu<rq_mode MultiplierShift>, relu_limit = -1.000000e+00 : f64, with_bias = true} : (tensor<1x16x8x8xf32>, tensor<8x16x1x1xf32>, tensor<8xf32>) -> tensor<1x8x8x8x!quant.calibrated<f32<-4.6632429999999996:4.6632429999999996>>> loc(#loc12)
    %15 = "tpu.Add"(%5, %14)  : (tensor<1x8x16x16x!quant.uniform<u8:f32, 0.019913970588235293>>, tensor<1x8x16x16x!quant.uniform<i8:f32, 0.036718448818897638>>) -> tensor<1x8x16x16x!quant.uniform<u8:f32, 0.033316780392156867>> loc(#loc15)
    %20 = "tpu.MatMul"(%17, %18, %19) : (tensor<1x8x!quant.uniform<u8:f32, 0.02>>, tensor<8x10xi8>, tensor<1x10xi32>) -> tensor<1x10x!quant.uniform<i8:f32, 0.03>> loc("logits_Gemm")
  } loc(#loc)
} loc(#loc)
#loc5 = loc("r1_Relu")
#loc9 = loc("r2_Reluc3_Conv_f32")
#loc12 = loc("c3_Conv")
#loc15 = loc("r3_Relu")
"""


@pytest.fixture(scope="module")
def graph(tiny_onnx: Path) -> L.SourceGraph:
    return L.source_graph(tiny_onnx)


def test_tpu_mlir_names_of_source_tensors(graph: L.SourceGraph) -> None:
    # TPU-MLIR's ONNX front end: "<first output>_<OpType>"; graph inputs keep their name
    assert graph.layer_name("image") == "image"
    assert graph.layer_name("c3") == "c3_Conv" and graph.layer_name("gap") == "gap_GlobalAveragePool"
    assert graph.layer_name("w3") is None and graph.layer_name("nope") is None
    # a Conv or Add read only by a Relu is merged with it by model_transform (do_relu)
    assert graph.fused_into("c1") == "r1" and graph.fused_into("sum") == "r3"
    assert graph.fused_into("c3") is None  # read by Resize
    assert graph.fused_into("r1") is None  # a Relu itself


def test_dump_mapped_back_to_source_names(graph: L.SourceGraph) -> None:
    # the keys bmodel_checker wrote for the tiny int8 bmodel (measured), in its own order
    names = ["image", "imager1_Relu_si8", "r1_Relu", "r2_Relu", "c3_Conv", "up_Resize", "r3_Relu",
             "gap_GlobalAveragePool", "flat_Flatten", "logits_Gemm", "logits_Gemm_f32"]
    dump = {n: np.full((2, 3), i, np.float64) for i, n in enumerate(reversed(names))}
    tensors, missing, extra = L.map_to_source(dump, graph)
    assert list(tensors) == ["image", "r1", "r2", "c3", "up", "r3", "gap", "flat", "logits"]  # topological
    assert all(v.dtype == np.float32 for v in tensors.values())
    np.testing.assert_array_equal(tensors["c3"], dump["c3_Conv"].astype(np.float32))
    assert missing == ["c1", "c2", "sum"] and sorted(extra) == ["imager1_Relu_si8", "logits_Gemm_f32"]
    notes = L.describe_missing(missing, graph)
    assert len(notes) == 1 and notes[0].startswith("3 layer(s) merged with the Relu")
    assert "c1 (Conv) -> r1" in notes[0] and "sum (Add) -> r3" in notes[0]
    assert "1 source tensor(s) with no TPU-MLIR layer" in L.describe_missing(["c1", "flat"], graph)[1]


def test_runs_merged_without_padding_rows() -> None:
    a = {"t": np.arange(4.0).reshape(2, 2), "w": np.ones(3)}
    b = {"t": np.arange(4.0, 8.0).reshape(2, 2), "w": np.ones(3)}
    merged = L._merge([(a, 2), (b, 1)], batch=2)  # 3 inputs at batch 2: one padded row dropped
    np.testing.assert_array_equal(merged["t"], np.arange(6.0).reshape(3, 2))
    assert "w" not in merged  # not batch-major: only kept from a single run
    single = L._merge([(a, 1)], batch=2)
    assert single["t"].shape == (1, 2) and single["w"].shape == (3,)
    chunks = list(L._chunks(np.arange(3 * 2, dtype=np.float32).reshape(3, 2, 1, 1), 2))
    assert [real for _, real in chunks] == [2, 1] and chunks[1][0].shape == (2, 2, 1, 1)
    np.testing.assert_array_equal(chunks[1][0][1], chunks[1][0][0])  # padded with the last row


def test_lowered_types_read_back_from_tpu_mlir() -> None:
    types = L.layer_types(TPU_MLIR)
    assert types["r1_Relu"] == {"op": "tpu.Conv2D", "dtype": "uint8"}
    assert types["c3_Conv"] == {"op": "tpu.Conv2D", "dtype": "f32"}  # calibrated f32: kept float
    assert types["r2_Reluc3_Conv_f32"]["dtype"] == "f32" and types["r3_Relu"]["dtype"] == "uint8"
    assert types["logits_Gemm"] == {"op": "tpu.MatMul", "dtype": "int8"}  # inline loc("...")
    assert L.element_type("tensor<1x8xf16>") == "f16" and L.element_type("(tensor<?x4xbf16>, tensor<1xf32>)") == "bf16"


def test_keep_float_entries_and_table(graph: L.SourceGraph, tmp_path: Path) -> None:
    entries = QT.table_layers(graph, ["c1", "c3", "c3", "r3"])
    # c1 is computed by the Conv+Relu op TPU-MLIR names after the Relu; repeats dropped
    assert entries == [{"tensor": "c1", "layer": "r1_Relu"}, {"tensor": "c3", "layer": "c3_Conv"},
                       {"tensor": "r3", "layer": "r3_Relu"}]
    with pytest.raises(UserError, match="not in the source ONNX graph: w3, bogus"):
        QT.table_layers(graph, ["c3", "w3", "bogus"])
    user = tmp_path / "mine.qtable"
    user.write_text("# mine\nr3_Relu F16\nup_Resize F32\n")
    path = tmp_path / "inputs" / "quantize_table.txt"
    QT.write_table(path, entries, user)
    text = path.read_text()
    # the user's lines win; every entry on a line of its own (the format has no inline comments)
    assert QT.read_table(text) == {"r3_Relu": "F16", "up_Resize": "F32", "r1_Relu": "F32", "c3_Conv": "F32"}
    assert "# c1\nr1_Relu F32\n" in text and all(" #" not in ln for ln in text.splitlines())
    user.write_text("r3_Relu\n")
    with pytest.raises(UserError, match="is not 'op_name mode'"):
        QT.write_table(path, entries, user)


def test_verify_reports_layers_left_in_int8(tmp_path: Path) -> None:
    mlir = tmp_path / "tpu.mlir"
    mlir.write_text(TPU_MLIR)
    said: list[str] = []
    out = QT.verify([{"tensor": "c3", "layer": "c3_Conv"}, {"tensor": "c1", "layer": "r1_Relu"},
                     {"tensor": "x", "layer": "x_Conv"}], mlir, said.append)
    assert [e["compiled"] for e in out] == ["f32", "uint8", None] and out[0]["op"] == "tpu.Conv2D"
    assert len(said) == 1 and "2 layer(s)" in said[0] and "r1_Relu (uint8)" in said[0] and "x_Conv (no such op)" in said[0]


@pytest.fixture
def no_sophon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(T, "find_toolchain", lambda: None)
    monkeypatch.setattr(T, "query_devices", lambda: ([], "no Sophon device"))


def test_keep_float_plan_carries_the_table(no_sophon: None, tiny_onnx: Path, tmp_path: Path,
                                           make_request: Any) -> None:
    target = T.SophonTarget()
    assert target.mixed_precision and "mixed_precision" in target.capabilities()
    assert "layer_outputs" in target.capabilities()
    req = make_request(tiny_onnx, tmp_path / "a", precision="int8", options={"chip": "bm1684x"}, calib=4,
                       dry_run=True)
    req.keep_float = ["c3", "c1"]
    res = target.convert(req)
    (dep,) = [c["argv"] for c in req.commands if c["argv"][0] == "model_deploy"]
    assert dep[dep.index("--quantize_table") + 1] == "../../" + C.QTABLE
    table = QT.read_table((tmp_path / "a" / C.QTABLE).read_text())
    assert table == {"c3_Conv": "F32", "r1_Relu": "F32"} and res.files["quantize_table"] == C.QTABLE
    plan = json.loads((tmp_path / "a" / "plan.json").read_text())
    assert plan["quantize_table"]["keep_float"] == [{"tensor": "c3", "layer": "c3_Conv"},
                                                    {"tensor": "c1", "layer": "r1_Relu"}]
    assert plan["quantize_table"]["mode"] == "F32" and plan["quantize_table"]["from_option"] is False
    assert res.extra["quantize_table"]["file"] == C.QTABLE
    assert "--quantize_table" in (tmp_path / "a" / "plan.sh").read_text()
    # the plan's model_deploy note names the looser floor TPU-MLIR uses with a quantize table
    assert C.CORRECTNESS_FLOOR_QTABLE in next(c["note"] for c in req.commands if c["argv"][0] == "model_deploy")

    # converting the same folder again without keep_float leaves no stale table behind
    again = make_request(tiny_onnx, tmp_path / "a", precision="int8", options={"chip": "bm1684x"}, calib=4,
                         dry_run=True)
    res2 = target.convert(again)
    assert not (tmp_path / "a" / C.QTABLE).exists() and "quantize_table" not in res2.files
    (dep2,) = [c["argv"] for c in again.commands if c["argv"][0] == "model_deploy"]
    assert "--quantize_table" not in dep2

    # a float build has no int8 layer to keep: noted, no table
    said: list[str] = []
    fp = make_request(tiny_onnx, tmp_path / "f", options={"chip": "bm1684x"}, dry_run=True)
    fp.keep_float, fp.log = ["c3"], said.append
    res3 = target.convert(fp)
    assert "quantize_table" not in res3.files and any("keep-float ignored" in s for s in said)


def _doc(stages: list[C.Stage]) -> dict[str, Any]:
    steps = C.build_plan(name="net", onnx="source.onnx", stages=stages, chip="bm1684x", precision="int8",
                         calib_count=2)
    return {"net_name": "net", "chip": "bm1684x", "quantize": "INT8", "steps": [s.to_dict() for s in steps],
            "stages": [{"index": i, "batch": s.batch, "size": [s.height, s.width]} for i, s in enumerate(stages)]}


def test_debug_context_kept_from_work(tmp_path: Path) -> None:
    stages = C.plan_stages([1, 4], [(32, 32)])
    doc = _doc(stages)
    assert L.keep_context(tmp_path, doc) is None  # nothing compiled (a planned or failed run)
    work = tmp_path / "work" / "b1_32x32"  # the calibrating stage: smallest batch
    work.mkdir(parents=True)
    for name in ("net_bm1684x_int8_sym_final.mlir", "net_b1_32x32.bmodel.json", "net_bm1684x_int8_sym_tpu.mlir",
                 "net_b1_32x32.bmodel"):
        (work / name).write_text(name)
    files, record = L.keep_context(tmp_path, doc)  # type: ignore[misc]
    assert (tmp_path / files["debug_final_mlir"]).read_text() == "net_bm1684x_int8_sym_final.mlir"
    assert (tmp_path / files["debug_tensor_location"]).read_text() == "net_b1_32x32.bmodel.json"
    assert (tmp_path / files["debug_tpu_mlir"]).read_text() == "net_bm1684x_int8_sym_tpu.mlir"
    # model.bmodel combines two stages: the debugged stage's own bmodel is kept too
    assert files["debug_bmodel"] == record["bmodel"] == "debug/stage.bmodel"
    assert record["stage"] == "b1_32x32" and record["batch"] == 1 and record["size"] == [32, 32]
    assert L.mlir_prefix("net", "bm1684", "F32") == "net_bm1684_f32"


def test_layer_dump_refusals(tmp_path: Path, make_inputs: Any, tiny_onnx: Path) -> None:
    art = Artifact(tmp_path, {"format": "hrdeploy-artifact/1", "files": {"model": "model.bmodel"},
                              "conversion": {"chip": "bm1684x"}})
    with pytest.raises(ToolchainMissing, match="TPU-MLIR is not installed") as e:
        L.dump_layers(art, make_inputs(1, 0), tiny_onnx, tmp_path / "w", None)
    assert "sophon.sail on a device cannot expose" in str(e.value.hint)
    tc = object()  # not reached: the artifact is refused first
    with pytest.raises(UserError, match="keeps no TPU-MLIR debug context"):
        L.dump_layers(art, make_inputs(1, 0), tiny_onnx, tmp_path / "w", tc)  # type: ignore[arg-type]
    for name in L.CONTEXT_FILES.values():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "model.bmodel").write_text("")
    art.manifest["files"].update(L.CONTEXT_FILES)
    art.manifest["conversion"]["layer_debug"] = {"stage": "b1_32x32", "batch": 1, "size": [32, 32]}
    with pytest.raises(UserError, match="inputs must be N x C x 32 x 32, got \\[1, 3, 16, 16\\]"):
        L.dump_layers(art, np.zeros((1, 3, 16, 16), np.float32), tiny_onnx, tmp_path / "w", tc)  # type: ignore[arg-type]


def test_producers_name_the_layer_that_runs(graph: L.SourceGraph) -> None:
    got = L.producers(["r1", "c3", "r3", "logits", "flat"], graph, TPU_MLIR)
    # r1 is computed by the Conv merged with its Relu; c3 was kept in F32 by the quantize table
    assert got == {"r1": "r1_Relu (Conv2D:uint8)", "c3": "c3_Conv (Conv2D:f32)",
                   "r3": "r3_Relu (Add:uint8)", "logits": "logits_Gemm (MatMul:int8)"}


def test_constants_noted_apart() -> None:
    g = L.SourceGraph(order=["x", "k", "y"], producer={"k": "Constant", "y": "Resize"}, consumers={"k": ["Resize"]},
                      relu_of={}, inputs=["x"], outputs=["y"])
    (note,) = L.describe_missing(["k"], g)
    assert note.startswith("1 Constant output(s)")
