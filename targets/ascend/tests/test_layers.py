"""``hrdeploy debug`` on Ascend: the plan folder for ``msit debug compare``, the stand-in msit
run on it (it computes msaccucmp's figures from the .om's model and the source ONNX), msit's
table read back as per-layer figures, and a corrupted convolution named as the first layer
that diverges."""
from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy.layerwise import compare_layers, source_tensors
from hrdeploy.model import InputSpec
from hrdeploy.target import ConvertRequest
from hrdeploy.testing.standins import artifact_from_result, normalised_pixels
from hrdeploy_target_ascend.layers import PLAN_DOC, SCRIPT
from hrdeploy_target_ascend.msit_csv import HEADER, GraphNode, map_rows, parse_compare_csv, rows_from_records
from hrdeploy_target_ascend.target import AscendTarget

SPEC = InputSpec(name="image", channels=3, height=16, width=24)
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def small_net(path: Path, corrupt: bool = False) -> Path:
    """image -> conv0 -> relu0 -> conv1 -> relu1 -> conv2 -> add(conv2, relu1) -> pool -> flatten.
    ``corrupt``: conv2's first output channel flipped and scaled (what a broken kernel or a bad
    weight conversion does to one layer)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(3)
    inits, nodes = [], []
    cin = 3
    for i in range(3):
        w = (rng.standard_normal((6, cin, 3, 3)) * 0.4).astype(np.float32)
        if corrupt and i == 2:
            w[0] *= -4.0
        b = (rng.standard_normal(6) * 0.1).astype(np.float32)
        inits += [helper.make_tensor(f"w{i}", TensorProto.FLOAT, w.shape, w.ravel()),
                  helper.make_tensor(f"b{i}", TensorProto.FLOAT, b.shape, b)]
        src = "image" if i == 0 else f"relu{i - 1}_out"
        nodes.append(helper.make_node("Conv", [src, f"w{i}", f"b{i}"], [f"conv{i}_out"], name=f"conv{i}", pads=[1] * 4))
        if i < 2:
            nodes.append(helper.make_node("Relu", [f"conv{i}_out"], [f"relu{i}_out"], name=f"relu{i}"))
        cin = 6
    nodes += [helper.make_node("Add", ["conv2_out", "relu1_out"], ["sum"], name="add"),
              helper.make_node("GlobalAveragePool", ["sum"], ["pooled"], name="pool"),
              helper.make_node("Flatten", ["pooled"], ["logits"], name="flatten", axis=1)]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                             ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 6])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def build(tmp: Path, onnx_path: Path, name: str, batches=(1,), **options):
    req = ConvertRequest(onnx_path=onnx_path, out_dir=tmp / name, model="tiny", variant="t", task="classification",
                         input=SPEC, preprocess=dict(IMAGENET), precision="fp16", batch_sizes=list(batches),
                         options={"soc": "Ascend310P3", **options}, log=lambda s: None)
    result = AscendTarget().convert(req)
    return artifact_from_result(req, result, "ascend", ["logits"])


def run_script(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(folder / SCRIPT)], capture_output=True, text=True, timeout=300)


@pytest.fixture
def nets(tmp_path: Path) -> tuple[Path, Path]:
    return small_net(tmp_path / "clean.onnx"), small_net(tmp_path / "corrupt.onnx", corrupt=True)


def test_plan_writes_what_msit_reads_and_its_commands(ascend_env, nets, tmp_path: Path) -> None:
    clean, _ = nets
    art = build(tmp_path, clean, "art", batches=(1, 2))  # one .om, dynamic batch 1,2
    x = normalised_pixels(3, 16, 24, seed=1)
    folder = tmp_path / "plan"
    commands = AscendTarget().layer_dump_plan(art, x, clean, folder)
    doc = json.loads((folder / PLAN_DOC).read_text())
    # the smallest compiled batch, one msit run per batch (msit compares one input set per call)
    assert doc["batch"] == 1 and doc["input_shape"] == "image:1,3,16,24" and len(doc["runs"]) == 3
    assert (folder / "source.onnx").read_bytes() == clean.read_bytes()
    assert (folder / "model.om").read_bytes() == (art.folder / "model.om").read_bytes()
    for k in range(3):
        raw = np.fromfile(folder / f"inputs/input_{k}.bin", dtype=np.float32).reshape(1, 3, 16, 24)
        np.testing.assert_array_equal(raw, x[k:k + 1])
    script = (folder / SCRIPT).read_text()
    assert script.count("\nmsit debug compare") == 3 and '-gm "$HERE/source.onnx"' in script
    msit = [shlex.split(c["cmd"]) for c in commands if c["cmd"].startswith("msit ")]
    assert len(msit) == 3
    here = str(folder.resolve())
    assert msit[0] == ["msit", "debug", "compare", "-gm", f"{here}/source.onnx", "-om", f"{here}/model.om",
                       "-i", f"{here}/inputs/input_0.bin", "-is", "image:1,3,16,24", "-c",
                       "/usr/local/Ascend/ascend-toolkit/latest", "-d", "0", "-ofs", "False", "-o", f"{here}/msit/0"]
    assert commands[0]["cmd"] == f"cd {here} && sh {SCRIPT}" and len(commands) == 4
    # a returned command runs as printed (the stand-in parses it as msit's argparse does)
    (folder / "msit/0").mkdir(parents=True)
    res = subprocess.run(msit[0], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list((folder / "msit/0").rglob("result_*.csv"))) == 1


def test_static_batch_oms_pad_the_last_batch(ascend_env, nets, tmp_path: Path) -> None:
    clean, _ = nets
    art = build(tmp_path, clean, "art", batches=(2, 4), batch_mode="static")  # model_bs2.om, model_bs4.om
    x = normalised_pixels(3, 16, 24, seed=2)
    AscendTarget().layer_dump_plan(art, x, clean, tmp_path / "plan")
    doc = json.loads((tmp_path / "plan" / PLAN_DOC).read_text())
    assert doc["batch"] == 2 and doc["om_source"] == "model_bs2.om"
    assert [r["count"] for r in doc["runs"]] == [2, 1]
    last = np.fromfile(tmp_path / "plan/inputs/input_1.bin", dtype=np.float32).reshape(2, 3, 16, 24)
    np.testing.assert_array_equal(last, np.stack([x[2], x[2]]))
    assert run_script(tmp_path / "plan").returncode == 0
    dump = AscendTarget().read_layer_dump(art, tmp_path / "plan", clean)
    assert dump.figures and "run(s) of batch 2" in dump.label


def test_clean_run_reads_back_fp16_level_figures(ascend_env, nets, tmp_path: Path) -> None:
    clean, _ = nets
    art = build(tmp_path, clean, "art")
    folder = tmp_path / "plan"
    x = normalised_pixels(2, 16, 24, seed=3)
    AscendTarget().layer_dump_plan(art, x, clean, folder)
    res = run_script(folder)
    assert res.returncode == 0, res.stdout + res.stderr
    dump = AscendTarget().read_layer_dump(art, folder, clean)
    # conv0+relu0 and conv1+relu1 are fused NPU ops: reported at the relu outputs; conv2 stands alone
    assert set(dump.figures) == {"relu0_out", "relu1_out", "conv2_out", "sum", "pooled", "logits"}
    for name, fig in dump.figures.items():
        assert fig["cosine"] > 0.99999, (name, fig)
        assert 40 < fig["sqnr_db"] <= 150 and 0 <= fig["max_rel"] < 1e-2, (name, fig)
    assert any("conv0+relu0 at relu0_out" in n for n in dump.notes)
    assert "Ascend310P3 force_fp16" in dump.label
    report = compare_layers(clean, source_tensors(clean, x), dump, 0.999)
    assert report.first_below is None  # no false alarm on a faithful fp16 build


def test_a_corrupted_conv_is_named_first_and_ranked_worst(ascend_env, nets, tmp_path: Path) -> None:
    clean, corrupt = nets
    art = build(tmp_path, corrupt, "bad")  # the .om carries the corrupted weights
    folder = tmp_path / "plan"
    x = normalised_pixels(2, 16, 24, seed=4)
    AscendTarget().layer_dump_plan(art, x, clean, folder)
    assert run_script(folder).returncode == 0
    dump = AscendTarget().read_layer_dump(art, folder, clean)
    assert dump.figures["relu1_out"]["cosine"] > 0.9999  # the layers before it are intact
    assert dump.figures["conv2_out"]["cosine"] < 0.99
    report = compare_layers(clean, source_tensors(clean, x), dump, 0.999)
    assert report.first_below is not None and report.first_below.node == "conv2"
    assert report.ranked[0].node == "conv2" and report.origin is not None and report.origin.node == "conv2"
    assert report.first_below.converted == "conv2 (Conv2D)"  # the NPU operator msit's table names
    # conv2 adds the noise; the Add after it inherits it and adds little of its own
    add = next(r for r in report.rows if r.node == "add")
    assert report.ranked[0].added_noise_db > -10 > add.added_noise_db


def test_incomplete_or_foreign_folders_are_refused_with_one_line(ascend_env, nets, tmp_path: Path) -> None:
    clean, _ = nets
    art = build(tmp_path, clean, "art")
    folder = tmp_path / "plan"
    AscendTarget().layer_dump_plan(art, normalised_pixels(2, 16, 24), clean, folder)
    with pytest.raises(UserError, match=r"incomplete: no msit result_\*\.csv under msit/0, msit/1") as e:
        AscendTarget().read_layer_dump(art, folder, clean)
    assert "\n" not in str(e.value) and SCRIPT in e.value.hint
    with pytest.raises(UserError, match="not an Ascend layer dump folder"):
        AscendTarget().read_layer_dump(art, tmp_path, clean)
    # a table that is not msit's
    for k in (0, 1):
        (folder / f"msit/{k}/20250101000000").mkdir(parents=True)
        (folder / f"msit/{k}/20250101000000/result_20250101000000.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="is not an msit compare table: no OpType"):
        AscendTarget().read_layer_dump(art, folder, clean)


def test_aipp_oms_and_foreign_sizes_are_refused(ascend_env, nets, tmp_path: Path) -> None:
    clean, _ = nets
    art = build(tmp_path, clean, "aipp", aipp="on")
    with pytest.raises(UserError, match="AIPP"):
        AscendTarget().layer_dump_plan(art, normalised_pixels(1, 16, 24), clean, tmp_path / "p1")
    art = build(tmp_path, clean, "plain")
    with pytest.raises(UserError, match="the inputs are 16x16, the .om is built for 16x24"):
        AscendTarget().layer_dump_plan(art, normalised_pixels(1, 16, 16), clean, tmp_path / "p2")


# ------------------------------------------------------------------------------ stand-in strictness
def test_stand_in_msit_parses_like_msit(ascend_env, nets, tmp_path: Path) -> None:
    clean, _ = nets
    art = build(tmp_path, clean, "art")
    folder = tmp_path / "plan"
    AscendTarget().layer_dump_plan(art, normalised_pixels(1, 16, 24), clean, folder)
    base = ["msit", "debug", "compare", "-gm", str(folder / "source.onnx"), "-om", str(folder / "model.om"),
            "-i", str(folder / "inputs/input_0.bin"), "-is", "image:1,3,16,24", "-o", str(tmp_path)]
    out = tmp_path / "out"
    out.mkdir()
    base[-1] = str(out)
    # argparse takes unambiguous prefixes (--onnx-fusion) as msit's parser does, not misspellings
    typo = subprocess.run([*base, "--onnx-fusoin-switch", "False"], capture_output=True, text=True, timeout=60)
    assert typo.returncode == 2 and "unrecognized arguments: --onnx-fusoin-switch" in typo.stderr
    missing_out = subprocess.run([*base[:-1], str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing_out.returncode == 2 and "output path:" in missing_out.stderr
    bad_om = subprocess.run([*base[:6], str(folder / "source.onnx"), *base[7:]], capture_output=True, text=True)
    assert bad_om.returncode == 2 and "om path:" in bad_om.stderr and "is illegal" in bad_om.stderr
    no_shape = subprocess.run([a for a in base if a not in ("-is", "image:1,3,16,24")], capture_output=True, text=True)
    assert no_shape.returncode == 1 and "dynamic shape" in no_shape.stdout
    wrong = subprocess.run([*base[:10], "image:2,3,16,24", *base[11:]], capture_output=True, text=True)
    assert wrong.returncode == 1 and "holds 4608 bytes" in wrong.stdout
    ok = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout
    tables = list(out.glob("*/result_*.csv"))
    assert len(tables) == 1  # only the valid call wrote a table
    rows = parse_compare_csv(tables[0].read_text())
    assert rows[0].op_type == "TransData" and not rows[0].comparable  # GroundTruth "*": skipped
    assert {r.kind for r in rows[1:]} == {"input", "output"}


# ------------------------------------------------------------------------------------ the parser
def _markdown_records(text: str) -> list[dict[str, str]]:
    """The first Markdown table of the recorded doc page as records, keyed like the CSV columns
    (the second DataType is the golden side's)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    header, body = cells[0], [c for c in cells[2:] if c and not set("".join(c)) <= set("-:")]
    keys, seen = [], set()
    for h in header:
        keys.append("GoldenDataType" if h == "DataType" and h in seen else h)
        seen.add(h)
    return [dict(zip(keys, row)) for row in body if len(row) == len(keys)]


def test_parses_the_row_msit_documents(fixtures_dir: Path) -> None:
    text = (fixtures_dir / "toolchains" / "msit_debug_compare_result_analyse_doc.md").read_text()
    rows = rows_from_records(_markdown_records(text))
    assert len(rows) == 1
    row = rows[0]
    assert (row.op_type, row.npu_op, row.npu_dtype, row.golden_dtype) == ("Sub", "Sub_26Mul_28", "float16", "float32")
    assert row.ground_truth == ["Sub_26", "Mul_28"] and (row.kind, row.slot) == ("output", 0)
    assert row.shape == "[1,1,1,108]" and row.values["CosineSimilarity"] == 1.0
    assert row.values["MeanRelativeError"] == pytest.approx(0.000364) and row.comparable
    # the fused op is compared against the output of its last ONNX node
    nodes = {"Sub_26": GraphNode("Sub_26", ("sub_out",), 26), "Mul_28": GraphNode("Mul_28", ("mul_out",), 28)}
    mapped, unknown = map_rows(rows, nodes)
    assert [(m.tensor, m.cosine) for m in mapped] == [("mul_out", 1.0)] and unknown == []
    mapped, unknown = map_rows(rows, {"Sub_26": nodes["Sub_26"]})
    assert mapped[0].tensor == "sub_out" and unknown == ["Mul_28"]
    # torch-style names spelled the way CANN's dump file names allow ("/" -> "_")
    torch_names = {"/a/Sub": GraphNode("/a/Sub", ("s",), 0), "/a/Mul": GraphNode("/a/Mul", ("m",), 1)}
    renamed = rows_from_records([{**_markdown_records(text)[0], "GroundTruth": "_a_Sub,_a_Mul"}])
    mapped, unknown = map_rows(renamed, torch_names)
    assert [m.tensor for m in mapped] == ["m"] and unknown == []


def test_csv_with_the_msaccucmp_header_and_a_missing_golden() -> None:
    rows = [",".join(HEADER),
            "3,Conv2D,conv1relu1,float16,NaN,\"conv1,relu1\",float32,conv1relu1:output:0,\"[1,6,16,24]\",NO,"
            "0.999990,0.01,0.001,0.004472,NaN,\"(0.1;0.2),(0.1;0.2)\",0.001,0.002,0.5,0.01,",
            "3,Conv2D,conv1relu1,float16,NaN,\"conv1,relu1\",float32,conv1relu1:input:0,\"[1,6,16,24]\",NO,"
            "0.9,0.01,0.001,0.004472,NaN,x,0.001,0.002,0.5,0.01,",
            "4,Cast,cast_4,NaN,NaN,*,NaN,cast_4:output:0,NaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN,NaN,"
            "The data does not exist on the ground truth side."]
    parsed = parse_compare_csv("\n".join(rows) + "\n")
    assert [r.kind for r in parsed] == ["output", "input", "output"]
    assert parsed[0].golden_dtype == "float32" and not parsed[2].comparable
    nodes = {"conv1": GraphNode("conv1", ("c1",), 1), "relu1": GraphNode("relu1", ("r1",), 2)}
    mapped, _ = map_rows(parsed, nodes)
    assert len(mapped) == 1 and mapped[0].tensor == "r1"
    assert mapped[0].sqnr_db == pytest.approx(-20 * np.log10(0.004472))  # RED -> SQNR


# ------------------------------------------------------------------------------ through the CLI
def named_classifier(path: Path, corrupt: bool = False) -> Path:
    """A small conv classifier with named nodes (as torch exports them) and hrnet_cls/w18
    metadata, so ``hrdeploy convert`` and ``debug`` use the ImageNet pipeline."""
    from onnx import helper, numpy_helper

    from hrdeploy.testing.graphs import save_classifier

    rng = np.random.default_rng(5)
    w0 = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    w1 = (rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32)
    if corrupt:
        w1[1] *= -5.0
    head = (rng.standard_normal((4, 1000)) * 0.1).astype(np.float32)
    nodes = [helper.make_node("Conv", ["image", "w0"], ["/stem/conv/Conv_output_0"], name="/stem/conv/Conv",
                              pads=[1] * 4, strides=[4, 4]),
             helper.make_node("Relu", ["/stem/conv/Conv_output_0"], ["/stem/relu/Relu_output_0"], name="/stem/relu/Relu"),
             helper.make_node("Conv", ["/stem/relu/Relu_output_0", "w1"], ["/body/conv/Conv_output_0"],
                              name="/body/conv/Conv", pads=[1] * 4),
             helper.make_node("GlobalAveragePool", ["/body/conv/Conv_output_0"], ["/pool/GlobalAveragePool_output_0"],
                              name="/pool/GlobalAveragePool"),
             helper.make_node("Flatten", ["/pool/GlobalAveragePool_output_0"], ["/flat/Flatten_output_0"],
                              name="/flat/Flatten"),
             helper.make_node("MatMul", ["/flat/Flatten_output_0", "head"], ["logits"], name="/head/MatMul")]
    return save_classifier(path, nodes, [numpy_helper.from_array(w0, "w0"), numpy_helper.from_array(w1, "w1"),
                                         numpy_helper.from_array(head, "head")],
                           "hand-built small classifier", opset=13, name="cls")


def test_debug_plans_then_reads_back_through_the_cli(tmp_path: Path, ascend_env, run_cli) -> None:
    from hrdeploy.plugins import registry
    from hrdeploy.reference import reference_inputs, run_onnx

    clean = named_classifier(tmp_path / "cls.onnx")
    (tmp_path / "bad").mkdir()
    bad = named_classifier(tmp_path / "bad" / "cls.onnx", corrupt=True)
    spec = registry().model("hrnet_cls")
    x = reference_inputs(spec, spec.variant("w18"), None, count=2)
    for src in (clean, bad):
        np.savez(src.with_suffix(".ref.npz"), input=x, **{"output:logits": run_onnx(src, x)[0]})
    # an .om with one broken convolution (as a toolchain fault would leave it): built from the
    # corrupted graph, debugged against the clean source
    res = run_cli("convert", bad, "--target", "ascend", "--soc", "Ascend310P3", "--precision", "fp16",
                  "-o", tmp_path / "art")
    assert res.code == 0, res
    planned = run_cli("debug", tmp_path / "art", "--source", clean, "--plan", tmp_path / "plan")
    assert planned.code == 0, planned
    assert "msit debug compare" in planned.out and (tmp_path / "plan" / SCRIPT).is_file()
    assert run_script(tmp_path / "plan").returncode == 0
    back = run_cli("debug", tmp_path / "art", "--source", clean, "--from-dump", tmp_path / "plan",
                   "--json", tmp_path / "layers.json")
    assert back.code == 1, back  # a layer is below the threshold
    doc = json.loads((tmp_path / "layers.json").read_text())
    assert doc["first_below_threshold"]["tensor"] == "/body/conv/Conv_output_0"
    assert doc["origin"]["converted"] == "/body/conv/Conv (Conv2D)"
    by_tensor = {r["tensor"]: r for r in doc["layers"]}
    assert by_tensor["/stem/relu/Relu_output_0"]["cosine"] > 0.9999  # the fused stem, intact
    assert "/stem/conv/Conv_output_0" not in by_tensor  # fused away into the stem's NPU operator
