"""``convert --gears``: a chosen gear set replaces the variant's on every static-shape target
(Ascend --dynamic_dims, one Sophon stage per gear, one VastAI build per gear), onnxruntime
ignores it with a note, bad gear files are refused with one line; the manifest records the set
and eval counts images per input size. Then the remapping is checked: an image evaluated at a
gear of its own size gives the official path's keypoints, and the AP of a network whose output
does not depend on padding is the same for every gear set."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hrdeploy.model import PipelineRuntime, Sample, SampleRef
from hrdeploy.ort_runner import OrtRunner
from hrdeploy.stream import Stream
from hrdeploy_dekr.spec import DEKRSpec
from hrdeploy_dekr.synthetic import (
    EXPECTED_AP,
    MAP_H,
    MAP_W,
    build_constant_dekr_onnx,
    build_synthetic_coco,
    constant_maps,
)
from hrdeploy_dekr.variants import GEARS

GEAR_SET = [[512, 512], [512, 640], [640, 512]]   # none of them is one of the seed's five


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gears")
    build_synthetic_coco(root / "coco")
    gear_file = root / "gears.json"
    # the shape 'hrdeploy gears -o' writes: the list under "gears", the report beside it
    gear_file.write_text(json.dumps({"model": "dekr", "variant": "w32", "gears": GEAR_SET, "budget": 3,
                                     "padded_pixels": 0}))
    plain = root / "plain.json"
    plain.write_text(json.dumps(GEAR_SET))
    return {"root": root, "coco": root / "coco", "model": build_constant_dekr_onnx(root / "const.onnx"),
            "gears": gear_file, "plain": plain}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _argv(m: dict, tool: str) -> list[list[str]]:
    return [c["argv"] for c in m["commands"] if Path(c["argv"][0]).name == tool]


# -- every static-shape target compiles exactly the file's gears ---------------------------------

def test_ascend_dynamic_dims_list_the_file_gears(files, tmp_path, run_cli) -> None:
    res = run_cli("convert", files["model"], "-t", "ascend", "--soc", "Ascend310P3", "--gears", files["gears"],
                  "--dry-run", "-o", tmp_path / "plan")
    assert res.code == 0, res
    m = _manifest(tmp_path / "plan")
    (argv,) = _argv(m, "atc")
    dims = [a for a in argv if a.startswith("--dynamic_dims=")]
    assert dims == ["--dynamic_dims=512,512;512,640;640,512"]
    assert "--input_shape=image:1,3,-1,-1" in argv and "--input_format=ND" in argv
    assert m["sizes"] == GEAR_SET and m["input"]["gears"] == GEAR_SET
    assert m["gears"] == {"sizes": GEAR_SET, "source": str(files["gears"])}


def test_sophon_one_stage_per_file_gear_in_one_bmodel(files, tmp_path, run_cli) -> None:
    res = run_cli("convert", files["model"], "-t", "sophon", "--chip", "bm1684x", "--gears", files["gears"],
                  "--dry-run", "-o", tmp_path / "plan")
    assert res.code == 0, res
    m = _manifest(tmp_path / "plan")
    shapes = sorted(a[a.index("--input_shapes") + 1] for a in _argv(m, "model_transform"))
    assert shapes == sorted(f"[[1,3,{h},{w}]]" for h, w in GEAR_SET)
    deployed = sorted(a[a.index("--model") + 1] for a in _argv(m, "model_deploy"))
    assert deployed == sorted(f"dekr_w32_b1_{h}x{w}.bmodel" for h, w in GEAR_SET)
    (combine,) = _argv(m, "model_tool")
    assert "--combine" in combine and len([a for a in combine if a.endswith(".bmodel")]) == len(GEAR_SET) + 1
    assert sorted(m["sizes"]) == sorted(GEAR_SET) and m["gears"]["source"] == str(files["gears"])


def test_vastai_one_build_per_gear_from_a_plain_list(files, tmp_path, run_cli) -> None:
    res = run_cli("convert", files["model"], "-t", "vastai", "--precision", "fp16", "--gears", files["plain"],
                  "--dry-run", "-o", tmp_path / "plan")
    assert res.code == 0, res
    m = _manifest(tmp_path / "plan")
    configs = sorted(a[-1] for a in _argv(m, "vamc"))
    assert configs == sorted(f"vamc_dekr_w32_{h}x{w}.yaml" for h, w in GEAR_SET)
    assert sorted(m["sizes"]) == sorted(GEAR_SET)
    assert m["gears"] == {"sizes": GEAR_SET, "source": str(files["plain"])}


def test_without_gears_the_variant_set_is_recorded(files, tmp_path, run_cli) -> None:
    res = run_cli("convert", files["model"], "-t", "ascend", "--soc", "Ascend310P3", "--dry-run",
                  "-o", tmp_path / "plan")
    assert res.code == 0, res
    m = _manifest(tmp_path / "plan")
    assert m["gears"] == {"sizes": [list(g) for g in GEARS[32]], "source": "variant"}


def test_python_api_takes_the_pairs(files, tmp_path) -> None:
    import hrdeploy

    art = hrdeploy.convert(files["model"], tmp_path / "plan", target="sophon", dry_run=True,
                           target_options={"chip": "bm1684x"}, gears=[(512, 768), (768, 512)])
    assert sorted(art.manifest["sizes"]) == [[512, 768], [768, 512]]
    assert art.manifest["gears"]["source"] == "argument"


def test_gears_auto_chooses_from_the_data(files, tmp_path, run_cli) -> None:
    """The synthetic set has two 320 x 320 images: one gear, the official 512 x 512, holds both."""
    res = run_cli("convert", files["model"], "-t", "ascend", "--soc", "Ascend310P3", "--gears", "auto",
                  "--data", f"coco:{files['coco']}", "--gears-budget", "3", "--dry-run", "-o", tmp_path / "plan")
    assert res.code == 0, res
    m = _manifest(tmp_path / "plan")
    assert m["sizes"] == [[512, 512]] and m["gears"]["source"] == f"auto: coco:{files['coco']}, budget 3"
    (argv,) = _argv(m, "atc")
    assert "--input_shape=image:1,3,512,512" in argv


# -- onnxruntime runs any size: the set is ignored, said so; eval counts images per size ----------

def test_onnxruntime_ignores_the_gears_with_a_note(files, tmp_path, run_cli) -> None:
    res = run_cli("convert", files["model"], "-t", "onnxruntime", "--gears", files["gears"], "-o", tmp_path / "art")
    assert res.code == 0, res
    assert "note: target 'onnxruntime' runs any input size" in res.err
    m = _manifest(tmp_path / "art")
    assert m["gears"]["sizes"] == GEAR_SET and "runs any input size" in m["gears"]["ignored"]
    assert m["sizes"] is None  # nothing compiled per gear: the pipeline keeps the official resize
    res = run_cli("eval", tmp_path / "art", "--data", f"coco:{files['coco']}", "-o", tmp_path / "r.json")
    assert res.code == 0, res
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["metric"]["AP"] == pytest.approx(EXPECTED_AP, abs=1e-6)
    assert r["data"]["per_gear"] == {"512x512": 2}
    assert "images per input size" in res.out and "512x512: 2" in res.out


@pytest.mark.parametrize("content,says", [
    (None, "no such file"),
    ("{not json", "is not JSON"),
    (json.dumps({"sizes": GEAR_SET}), "holds no gear list"),
    (json.dumps({"gears": [[512]]}), "is not an [H, W] pair"),
    (json.dumps({"gears": [[512.0, 512]]}), "is not an [H, W] pair"),
    (json.dumps({"gears": [[True, 512]]}), "is not an [H, W] pair"),
    (json.dumps({"gears": [[500, 512]]}), "not a positive multiple of the input stride 32"),
    (json.dumps({"gears": [[0, 512]]}), "not a positive multiple"),
    (json.dumps({"gears": []}), "the gear list is empty"),
    (json.dumps({"model": "dekr", "variant": "w48", "gears": GEAR_SET}), "was chosen for variant 'w48', not 'w32'"),
])
def test_bad_gear_files_are_refused_with_one_line(files, tmp_path, run_cli, content, says) -> None:
    gear_file = tmp_path / "g.json"
    if content is not None:
        gear_file.write_text(content)
    res = run_cli("convert", files["model"], "-t", "ascend", "--soc", "Ascend310P3", "--gears", gear_file,
                  "--dry-run", "-o", tmp_path / "plan")
    assert res.code == 2, res
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert lines[0].startswith("error: ") and says in lines[0], res.err
    assert not any(ln.startswith("Traceback") for ln in lines)
    assert not (tmp_path / "plan").exists()  # refused before anything was written


def test_fixed_size_model_takes_no_gears(files, tmp_path, run_cli) -> None:
    import onnx
    from hrdeploy.artifact import write_onnx_metadata
    from hrdeploy.onnx_export import model_metadata
    from hrdeploy.testing.standins import tiny_onnx
    from hrdeploy_hrnet_pose.spec import HRNetPoseSpec

    # the stand-in model as an hrnet_pose export: a fixed 256 x 192 input
    spec = HRNetPoseSpec()
    variant = spec.variant(None)
    path = tiny_onnx(tmp_path / "fixed.onnx", input_dims=("N", 3, *variant.input.fixed_size))
    model = onnx.load(str(path))
    write_onnx_metadata(model, model_metadata(spec, variant, "tests", None))
    onnx.save(model, str(path))
    res = run_cli("convert", path, "-t", "ascend", "--soc", "Ascend310P3", "--gears", files["gears"],
                  "--dry-run", "-o", tmp_path / "plan")
    assert res.code == 2, res
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert "has the fixed input size 256x192: it takes no --gears" in lines[0], res.err


# -- item 4: the remapping -------------------------------------------------------------------------

def padding_invariant_dekr_onnx(path: Path) -> Path:
    """The constant model's maps, placed at the centre of a map of the network input's size /4
    (+1 column: the constant maps are 129 wide at 512 for their mirror axis): what a network
    whose output does not depend on padding gives for an image padded symmetrically (the warp
    centres the image in its window). At 512 x 512 it is exactly ``build_constant_dekr_onnx``."""
    import onnx
    from hrdeploy.artifact import write_onnx_metadata
    from hrdeploy.onnx_export import model_metadata
    from onnx import TensorProto, helper, numpy_helper

    heat, off = constant_maps()
    i64 = np.int64
    init = [numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "zero"),
            numpy_helper.from_array(heat[None], "heat_const"), numpy_helper.from_array(off[None], "offset_const"),
            numpy_helper.from_array(np.array([2], i64), "s2"), numpy_helper.from_array(np.array([4], i64), "s4"),
            numpy_helper.from_array(np.array([4, 4], i64), "four"), numpy_helper.from_array(np.array([2, 2], i64), "two"),
            numpy_helper.from_array(np.array([MAP_H, MAP_W - 1], i64), "base"),
            numpy_helper.from_array(np.array([0, 0], i64), "nc")]
    nodes = [
        helper.make_node("Shape", ["image"], ["shape"]),
        helper.make_node("Slice", ["shape", "s2", "s4"], ["hw"]),
        helper.make_node("Div", ["hw", "four"], ["map_hw"]),             # (H/4, W/4)
        helper.make_node("Sub", ["map_hw", "base"], ["extra"]),          # rows/cols to add
        helper.make_node("Div", ["extra", "two"], ["before"]),
        helper.make_node("Sub", ["extra", "before"], ["after"]),
        helper.make_node("Concat", ["nc", "before", "nc", "after"], ["pads"], axis=0),
        # (N, 1, 1, 1): the outputs follow the input's batch
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "heat_const"], ["heat_b"]),
        helper.make_node("Add", ["zeros", "offset_const"], ["off_b"]),
        helper.make_node("Pad", ["heat_b", "pads"], ["heatmap"], mode="constant"),
        # pose = pixel - offset holds wherever the person's rows moved to: offsets are relative
        helper.make_node("Pad", ["off_b", "pads"], ["offset"], mode="constant"),
    ]
    graph = helper.make_graph(
        nodes, "dekr_padding_invariant",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["batch", 18, "mh", "mw"]),
         helper.make_tensor_value_info("offset", TensorProto.FLOAT, ["batch", 34, "mh", "mw"])],
        initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    spec = DEKRSpec()
    meta = model_metadata(spec, spec.variant("w32"), "padding-invariant synthetic outputs (tests)", 1)
    meta["opset"] = 17
    write_onnx_metadata(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def input_dependent_dekr_onnx(path: Path, seed: int = 3) -> Path:
    """A DEKR-shaped network whose maps come from the image: 4x4 average pooling (stride 4, the
    output stride) then fixed random 1x1 convolutions; the heatmaps through a sigmoid."""
    import onnx
    from hrdeploy.artifact import write_onnx_metadata
    from hrdeploy.onnx_export import model_metadata
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    wh = (rng.standard_normal((18, 3, 1, 1)) * 2).astype(np.float32)
    wo = (rng.standard_normal((34, 3, 1, 1)) * 8).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["pooled", "wh"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["heatmap"]),
        helper.make_node("Conv", ["pooled", "wo"], ["offset"]),
    ]
    graph = helper.make_graph(
        nodes, "dekr_input_dependent",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["batch", 18, "mh", "mw"]),
         helper.make_tensor_value_info("offset", TensorProto.FLOAT, ["batch", 34, "mh", "mw"])],
        initializer=[numpy_helper.from_array(wh, "wh"), numpy_helper.from_array(wo, "wo")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    spec = DEKRSpec()
    write_onnx_metadata(model, {**model_metadata(spec, spec.variant("w32"), "random 1x1 maps (tests)", 1),
                                "opset": 17})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _people(onnx_path: Path, image: np.ndarray, gears) -> tuple[list[dict], tuple[int, ...]]:
    """The pipeline on onnxruntime with ``gears`` as the runtime sizes (None: the official
    resize); the people and the network input shape."""
    spec = DEKRSpec()
    pipe = spec.pipeline(spec.variant("w32"), {}, runtime=PipelineRuntime(
        sizes=tuple(tuple(g) for g in gears) if gears else None))
    ref = SampleRef("img", Path("img.jpg"))
    shape = tuple(pipe.prepare(Sample(ref, image))[0].tensor.shape)
    with OrtRunner(onnx_path) as runner:
        ((_, pred),) = Stream(pipe, runner, images={"img": image}).run([ref])
    return pred["people"], shape


@pytest.mark.parametrize("hw,gears", [
    ((512, 768), [(512, 768), (768, 512), (512, 512)]),
    ((768, 512), [(512, 768), (768, 512)]),
    ((512, 512), GEARS[32]),
])
def test_keypoints_at_the_image_own_size_gear_match_the_official_path(tmp_path, hw, gears) -> None:
    model = input_dependent_dekr_onnx(tmp_path / "dep.onnx")
    image = np.random.default_rng(5).integers(0, 256, (*hw, 3), dtype=np.uint8)
    official, shape_o = _people(model, image, None)
    geared, shape_g = _people(model, image, gears)
    assert shape_o == shape_g == (3, *hw)  # the gear is the image's own (= the official) size
    assert len(official) > 0 and len(geared) == len(official)
    kp_o = np.array([p["keypoints"] for p in official])
    kp_g = np.array([p["keypoints"] for p in geared])
    assert np.abs(kp_o[..., :2] - kp_g[..., :2]).max() <= 1e-3
    np.testing.assert_allclose(kp_g[..., 2], kp_o[..., 2], atol=1e-6)


def _coco_ap(onnx_path: Path, coco: Path, gears) -> tuple[float, set[tuple[int, ...]]]:
    spec = DEKRSpec()
    variant = spec.variant("w32")
    pipe = spec.pipeline(variant, {}, runtime=PipelineRuntime(sizes=tuple(tuple(g) for g in gears) if gears else None))
    dataset = spec.dataset("coco", coco, {})
    metric = dataset.metric()
    refs = list(dataset)
    sizes = set()

    def seen(ref, items, outputs) -> None:
        sizes.update(tuple(it.tensor.shape[-2:]) for it in items)

    with OrtRunner(onnx_path) as runner:
        for ref, pred in Stream(pipe, runner, observe=seen).run(refs):
            metric.update(ref, pred)
    return metric.summary()["AP"], sizes


@pytest.mark.parametrize("gears,size", [
    (None, (512, 512)),                                   # the official resize
    (GEARS[32], (512, 512)),                              # the seed's five
    ([(512, 768), (768, 512)], (512, 768)),               # padded by 256 columns
    ([(512, 1024), (1024, 512)], (512, 1024)),            # padded by 512 columns
    ([(512, 576), (576, 512), (512, 960)], (512, 576)),   # a chosen set, no seed gear in it
])
def test_ap_is_the_same_whichever_gear_set(files, tmp_path, gears, size) -> None:
    model = padding_invariant_dekr_onnx(tmp_path / "inv.onnx")
    ap, sizes = _coco_ap(model, files["coco"], gears)
    assert sizes == {size}  # the gear set was used: the 320 x 320 images went through this size
    assert ap == pytest.approx(EXPECTED_AP, abs=1e-9)


def test_padding_invariant_network_is_the_constant_one_at_512(files, tmp_path) -> None:
    """At 512 x 512 the padding-invariant model gives the constant model's maps exactly, so the
    AP test above checks padding and not another network."""
    inv = padding_invariant_dekr_onnx(tmp_path / "inv.onnx")
    x = np.zeros((1, 3, 512, 512), np.float32)
    with OrtRunner(inv) as a, OrtRunner(files["model"]) as b:
        for got, want in zip(a.run({"image": x}), b.run({"image": x})):
            np.testing.assert_array_equal(got, want)
        heat, _ = a.run({"image": np.zeros((1, 3, 512, 768), np.float32)})
    assert heat.shape == (1, 18, 128, 193)


def test_a_network_that_ignores_the_padding_shift_loses_the_ap(files) -> None:
    """The control of the test above: the constant model keeps its maps at 128 x 129 whatever
    the input size, so at a padded gear its people land off the image and the AP drops; the AP
    check does see a wrong remapping."""
    ap, sizes = _coco_ap(files["model"], files["coco"], [(512, 768), (768, 512)])
    assert sizes == {(512, 768)} and ap < 0.5 * EXPECTED_AP


def test_a_resumed_eval_counts_the_stored_images_per_gear(files, tmp_path, run_cli, monkeypatch) -> None:
    """The partial file keeps each image's input sizes: a resumed run reports the same
    ``data.per_gear`` as an uninterrupted one."""
    import hrdeploy.stream as engine

    args = ("eval", files["model"], "--data", f"coco:{files['coco']}")
    full = run_cli(*args, "-o", tmp_path / "full.json")
    assert full.code == 0, full
    real = engine.Stream._finish_ready

    def stop_after_one(self, waiting, final):
        for got in real(self, waiting, final):
            yield got
            raise KeyboardInterrupt  # after the first image's record

    monkeypatch.setattr(engine.Stream, "_finish_ready", stop_after_one)
    out = tmp_path / "resumed.json"
    assert run_cli(*args, "-o", out).code == 130
    stored = [json.loads(x) for x in out.with_name(out.name + ".partial.jsonl").read_text().splitlines()[1:]]
    assert [r["input_sizes"] for r in stored] == [[[512, 512]]]
    monkeypatch.setattr(engine.Stream, "_finish_ready", real)
    res = run_cli(*args, "-o", out, "--resume")
    assert res.code == 0, res
    want = json.loads((tmp_path / "full.json").read_text())["data"]["per_gear"]
    assert want == {"512x512": 2}
    assert json.loads(out.read_text())["data"]["per_gear"] == want


# -- a compiled static-shape artifact: its gears drive the pipeline and eval counts them ----------

ASCEND_FAKES = Path(__file__).resolve().parents[1] / "targets" / "ascend" / "tests" / "fakes"


@pytest.fixture
def ascend_standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path):
    """atc, npu-smi and ais_bench stand-ins (as targets/ascend/tests/conftest.py sets them up)."""
    import os

    from hrdeploy.testing.standins import activate_standins, forget_modules

    activate_standins(monkeypatch, tmp_path / "bin", ASCEND_FAKES, {"atc": "fake_atc", "npu-smi": "fake_npu_smi"})
    home = tmp_path / "ascend-toolkit" / "latest"
    home.mkdir(parents=True)
    (home / "version.info").write_text("Version=7.0.RC1\nversion_dir=7.0.RC1\n")
    monkeypatch.setenv("PYTHONPATH", f"{ASCEND_FAKES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("ASCEND_HOME_PATH", str(home))
    monkeypatch.setenv("FAKE_NPU_SMI", str(fixtures_dir / "toolchains" / "npu-smi_info_310P3_1card.txt"))
    monkeypatch.setenv("FAKE_ATC_CALLS", str(tmp_path / "atc_calls.jsonl"))
    yield tmp_path
    forget_modules(("ais_bench", "ascend_fakeom", "fake_atc", "fake_npu_smi"))


def test_ascend_artifact_runs_at_the_chosen_gears(tmp_path, run_cli, ascend_standins) -> None:
    """Compiled (by the stand-in atc) for a chosen set without 512 x 512: eval snaps the 320 x 320
    images to 512 x 768 from the artifact's sizes, counts them there, and the padding-invariant
    network keeps the AP."""
    coco = tmp_path / "coco"
    build_synthetic_coco(coco)
    model = padding_invariant_dekr_onnx(tmp_path / "inv.onnx")
    gear_file = tmp_path / "gears.json"
    gear_file.write_text(json.dumps({"gears": [[512, 768], [768, 512]]}))
    res = run_cli("convert", model, "-t", "ascend", "--soc", "Ascend310P3", "--gears", gear_file, "-o", tmp_path / "art")
    assert res.code == 0, res
    m = _manifest(tmp_path / "art")
    assert m["sizes"] == [[512, 768], [768, 512]] and m["parity"]["status"] == "passed"
    res = run_cli("eval", tmp_path / "art", "--data", f"coco:{coco}", "-o", tmp_path / "r.json")
    assert res.code == 0, res
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["data"]["per_gear"] == {"512x768": 2}
    assert r["preprocess"]["gears"] == [[512, 768], [768, 512]]
    assert r["metric"]["AP"] == pytest.approx(EXPECTED_AP, abs=1e-9)


def test_the_file_hrdeploy_gears_writes_is_what_convert_takes(tmp_path, run_cli) -> None:
    """Round trip: ``hrdeploy gears -o`` on a set of mixed sizes, then ``convert --gears`` on
    Sophon builds one stage per gear of that file."""
    import cv2

    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(480, 640), (427, 640), (640, 480), (640, 427), (360, 640), (500, 500)]):
        cv2.imwrite(str(images / f"{i}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    gear_file = tmp_path / "chosen.json"
    res = run_cli("gears", "dekr", "--data", f"coco:{images}", "--budget", "3", "-o", gear_file)
    assert res.code == 0, res
    chosen = json.loads(gear_file.read_text())["gears"]
    assert 1 <= len(chosen) <= 3
    model = build_constant_dekr_onnx(tmp_path / "const.onnx")
    res = run_cli("convert", model, "-t", "sophon", "--chip", "bm1684x", "--gears", gear_file, "--dry-run",
                  "-o", tmp_path / "plan")
    assert res.code == 0, res
    m = _manifest(tmp_path / "plan")
    shapes = sorted(a[a.index("--input_shapes") + 1] for a in _argv(m, "model_transform"))
    assert shapes == sorted(f"[[1,3,{h},{w}]]" for h, w in chosen)
    assert m["gears"]["sizes"] == chosen
