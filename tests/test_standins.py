"""hrdeploy.testing.standins: stand-in executables, the tiny model and the artifact helper the
toolchain targets' tests share."""
from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from hrdeploy.model import InputSpec
from hrdeploy.kit.normalise import Normalisation
from hrdeploy.target import ConvertRequest, ConvertResult
from hrdeploy.testing.standins import (activate_standins, artifact_from_result, forget_modules, hide_toolchain,
                                       install_standins, normalised_pixels, ort_outputs, tiny_onnx)


def test_wrappers_run_the_stand_in_main_with_this_python(tmp_path: Path) -> None:
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "fake_tool.py").write_text(
        "import sys\n\ndef main():\n    print(sys.executable, sys.argv[1:])\n    return 3\n")
    bin_dir = install_standins(tmp_path / "bin", fakes, {"vendor-tool": "fake_tool", "other": "fake_tool"})
    assert sorted(p.name for p in bin_dir.iterdir()) == ["other", "vendor-tool"]
    assert all(os.access(p, os.X_OK) for p in bin_dir.iterdir())
    # run by name through PATH, from another folder, as a target runs the real tool
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["vendor-tool", "--x", "a b"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 3
    assert proc.stdout == f"{sys.executable} ['--x', 'a b']\n"


def test_a_machine_with_and_without_the_toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "zz_fake_vendor_rt.py").write_text("def main():\n    return 0\n")
    hide_toolchain(monkeypatch, tmp_path / "empty")
    assert shutil.which("vendor-tool") is None and shutil.which("sh") is None
    bin_dir = activate_standins(monkeypatch, tmp_path / "bin", fakes, {"vendor-tool": "zz_fake_vendor_rt"})
    assert shutil.which("vendor-tool") == str(bin_dir / "vendor-tool")
    import zz_fake_vendor_rt  # the fake runtime imports in this process too

    assert zz_fake_vendor_rt.main() == 0
    forget_modules(["zz_fake_vendor_rt"])
    assert "zz_fake_vendor_rt" not in sys.modules


def test_forget_modules_drops_a_stand_in_and_its_submodules_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("zz_fake_rt", "zz_fake_rt.interface", "zz_fake_rt_other"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    forget_modules(["zz_fake_rt"])
    assert "zz_fake_rt" not in sys.modules and "zz_fake_rt.interface" not in sys.modules
    assert "zz_fake_rt_other" in sys.modules


def _numpy_tiny(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    w, b = init["w"].astype(np.float64), init["b"].astype(np.float64)
    n, c, h, wd = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((n, 4, h, wd))
    for dy in range(3):
        for dx in range(3):
            conv += np.einsum("nchw,oc->nohw", xp[:, :, dy:dy + h, dx:dx + wd], w[:, :, dy, dx])
    heat = np.maximum(conv + b.reshape(1, 4, 1, 1), 0.0)
    return [heat, heat.mean(axis=(2, 3))]


def test_tiny_model_computes_what_it_says_at_any_size(tmp_path: Path) -> None:
    a = tiny_onnx(tmp_path / "a.onnx", seed=0)
    b = tiny_onnx(tmp_path / "b.onnx", seed=1)
    assert a.read_bytes() != b.read_bytes()
    for shape in ((1, 3, 16, 24), (2, 3, 9, 5)):
        x = normalised_pixels(shape[0], shape[2], shape[3], seed=4)
        got = ort_outputs(a, x)
        ref = _numpy_tiny(a, x)
        assert [g.shape for g in got] == [(shape[0], 4, shape[2], shape[3]), (shape[0], 4)]
        for g, r in zip(got, ref):
            assert g.dtype == np.float32 and np.max(np.abs(g - r)) <= 1e-5 * np.max(np.abs(r))


def test_normalised_pixels_are_uint8_pixels_under_imagenet_normalisation() -> None:
    x = normalised_pixels(3, 4, 5, seed=7)
    assert x.shape == (3, 3, 4, 5) and x.dtype == np.float32
    norm = Normalisation.from_preprocess({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    px = norm.to_uint8_nhwc(x)
    assert np.max(np.abs(norm.apply(px) - x)) < 1e-5  # pixels recovered exactly
    assert np.array_equal(x, normalised_pixels(3, 4, 5, seed=7))


def test_artifact_from_result_describes_what_convert_returned(tmp_path: Path) -> None:
    req = ConvertRequest(onnx_path=tmp_path / "m.onnx", out_dir=tmp_path / "art", model="tiny", variant="t",
                         task="classification", input=InputSpec(name="image", channels=3, height=16, width=24),
                         preprocess={"mean": [0.5] * 3}, precision="fp16", batch_sizes=[1, 2],
                         options={"soc": "X"}, dry_run=True)
    req.record(["tool", "--flag"])
    res = ConvertResult(files={"model": "model.bin"}, batch_sizes=[1, 2], sizes=[(16, 24)], extra={"planned": True})
    art = artifact_from_result(req, res, "test", ["logits"])
    assert art.path == tmp_path / "art" and art.target == "test" and art.precision == "fp16"
    assert art.batch_sizes == [1, 2] and art.sizes == [(16, 24)] and art.input == req.input
    m = art.manifest
    assert m["files"] == {"model": "model.bin"} and m["outputs"] == ["logits"] and m["dry_run"]
    assert m["target_options"] == {"soc": "X"} and m["conversion"] == {"planned": True}
    assert m["commands"][0]["cmd"] == "tool --flag"


def test_onnx_inputs_reads_the_input_dims_from_the_wire_format(tmp_path: Path) -> None:
    import onnx

    from hrdeploy.testing.onnxwire import onnx_inputs

    dyn = tiny_onnx(tmp_path / "dyn.onnx")
    fixed = tiny_onnx(tmp_path / "fixed.onnx", input_dims=(2, 3, 16, "W"))
    assert onnx_inputs(dyn) == {"image": [None, 3, None, None]}
    assert onnx_inputs(fixed) == {"image": [2, 3, 16, None]}
    # what onnx itself reads, and an initializer also listed as a graph input is not an input
    model = onnx.load(str(fixed))
    model.graph.input.append(onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [4, 3, 3, 3]))
    onnx.save(model, str(tmp_path / "with_init.onnx"))
    dims = [d.dim_value if d.HasField("dim_value") else None for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert onnx_inputs(tmp_path / "with_init.onnx") == {"image": dims}
    (tmp_path / "not.onnx").write_bytes(b"\xff\xff\xff not a model")
    with pytest.raises(ValueError, match="not an ONNX model"):
        onnx_inputs(tmp_path / "not.onnx")
