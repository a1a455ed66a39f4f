"""Issue 14 items 2-3 and issue 13's verify exit codes: an artifact is untrusted input. Every
path it names stays inside it, every file is the one written at conversion, and a malformed
artifact is one line and exit 2 for every command that opens it (exit 1 stays a parity breach)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from classification_data import colour_classifier_onnx, colour_images, imagenet_label_layout
from hrdeploy.artifact import read_onnx_metadata, reference_meta, save_reference, write_onnx_metadata
from hrdeploy.reference import reference_inputs, run_onnx
from hrdeploy.plugins import registry

SECRET = "HOST-SECRET-a1b2c3: a file of the machine, never part of an artifact"


def _export_like(path: Path, count: int = 3, seed: int = 7) -> Path:
    """A hand-built ONNX with the reference `hrdeploy export` stores next to it (which records
    the sha256 of the .onnx it was computed with)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour_classifier_onnx(path)
    spec = registry().model("hrnet_cls")
    x = reference_inputs(spec, spec.variant("w18"), None, count=count, seed=seed)
    meta = reference_meta(read_onnx_metadata(path), onnx_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    save_reference(path.with_suffix(".ref.npz"), x, run_onnx(path, x), ["logits"], meta)
    return path


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A folder standing for the rest of the machine: a secret file and a model outside the artifact."""
    folder = tmp_path / "host"
    folder.mkdir()
    (folder / "secret.txt").write_text(SECRET)
    return folder


@pytest.fixture
def art(tmp_path: Path, run_cli) -> Path:
    src = _export_like(tmp_path / "src" / "colour.onnx")
    res = run_cli("convert", src, "--target", "onnxruntime", "-o", tmp_path / "art")
    assert res.code == 0, res
    return tmp_path / "art"


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder: Path, doc: object) -> None:
    (folder / "manifest.json").write_text(json.dumps(doc))


def _refused(res, *words: str) -> None:
    """Exit 2 with exactly one line, no traceback, containing ``words``."""
    assert res.code == 2, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res
    assert "Traceback" not in res.err + res.out
    for w in words:
        assert w in lines[0], res


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _commands(tmp_path: Path) -> list[list[object]]:
    """Every command that opens a MODEL_FILE, with arguments that would otherwise run."""
    images = tmp_path / "images"
    if not images.exists():
        colour_images(images, per_colour=1)
        imagenet_label_layout(tmp_path / "imagenet", per_colour=1)
    return [["verify"], ["predict", images], ["bench", "--batch", "1", "--seconds", "0.05", "--no-e2e"],
            ["eval", "--data", f"imagenet:{tmp_path / 'imagenet'}", "-o", tmp_path / "result.json"]]


def _all_refuse(run_cli, tmp_path: Path, model: Path, *words: str) -> None:
    for cmd in _commands(tmp_path):
        _refused(run_cli(cmd[0], model, *cmd[1:]), *words)
    assert not (tmp_path / "result.json").exists()


# -- containment: manifest paths --------------------------------------------------------------
@pytest.mark.parametrize("role", ["model", "reference"])
@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_manifest_paths_outside_the_artifact_are_refused(art, host, tmp_path, run_cli, role, kind):
    shutil.copyfile(art / ("model.onnx" if role == "model" else "reference.npz"), host / "outside.bin")
    m = _manifest(art)
    if kind == "absolute":
        m["files"][role], why = str(host / "outside.bin"), "absolute path"
    elif kind == "dotdot":
        m["files"][role], why = "../host/outside.bin", "climbs out"
    else:
        os.symlink(host / "outside.bin", art / "link.bin")
        m["files"][role], why = "link.bin", "symbolic link"
    _write_manifest(art, m)
    before = _tree(host)
    _all_refuse(run_cli, tmp_path, art, f"files.{role}", why, "manifest.json")
    assert _tree(host) == before


def test_a_hash_entry_climbing_out_is_refused(art, host, tmp_path, run_cli):
    m = _manifest(art)
    m["sha256"]["../host/secret.txt"] = "0" * 64
    _write_manifest(art, m)
    _refused(run_cli("verify", art), "climbs out")


# -- containment: ONNX metadata extra_files -----------------------------------------------------
@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_onnx_extra_files_outside_are_never_copied_into_an_artifact(host, tmp_path, run_cli, kind):
    src = _export_like(tmp_path / "src" / "colour.onnx")
    if kind == "absolute":
        name, why = str(host / "secret.txt"), "absolute path"
    elif kind == "dotdot":
        name, why = "../host/secret.txt", "climbs out"
    else:
        os.symlink(host / "secret.txt", src.parent / "colour.rescore.npz")
        name, why = "colour.rescore.npz", "symbolic link"
    model = onnx.load(str(src))
    meta = read_onnx_metadata(src)
    meta["extra_files"] = {"rescore.npz": name}
    write_onnx_metadata(model, meta)
    onnx.save(model, str(src))

    res = run_cli("convert", src, "--target", "onnxruntime", "-o", tmp_path / "art")
    _refused(res, "extra_files.rescore.npz", why)
    out = tmp_path / "art"
    assert not any(SECRET.encode() in data for data in (_tree(out) if out.exists() else {}).values())
    _all_refuse(run_cli, tmp_path, src, "extra_files.rescore.npz", why)


# -- integrity ---------------------------------------------------------------------------------
def test_convert_records_the_sha256_of_every_file(art):
    m = _manifest(art)
    files = {p.name for p in art.iterdir() if p.is_file()} - {"manifest.json", "verify.json"}
    assert set(m["sha256"]) == files and {"model.onnx", "reference.npz"} <= files
    for name, digest in m["sha256"].items():
        assert hashlib.sha256((art / name).read_bytes()).hexdigest() == digest


def test_an_edited_model_file_is_refused_by_every_command(art, tmp_path, run_cli):
    data = bytearray((art / "model.onnx").read_bytes())
    data[-1] ^= 0xFF  # one byte in the weights: the graph still loads
    (art / "model.onnx").write_bytes(bytes(data))
    _all_refuse(run_cli, tmp_path, art, "artifact file model.onnx does not match the sha256 in",
                "changed after conversion; re-convert")
    assert not (art / "verify.json").exists()


def test_an_edited_variant_input_precision_or_preprocessing_is_refused(art, tmp_path, run_cli):
    original = _manifest(art)
    looser = {**original["preprocess"], "mean": [0.5, 0.5, 0.5]}
    for field, value, words in [("variant", "w32", ("variant 'w18' in the reference", "'w32' in the manifest")),
                                ("input", {**original["input"], "name": "pixels"}, ("input name",)),
                                ("precision", "int8", ("precision 'fp32' in the reference",)),
                                ("preprocess", looser, ("preprocess mean", "[0.5, 0.5, 0.5] in the manifest"))]:
        _write_manifest(art, {**original, field: value})
        _all_refuse(run_cli, tmp_path, art, "reference.npz does not belong to", *words)


def test_a_swapped_reference_is_refused(art, tmp_path, run_cli):
    other = _export_like(tmp_path / "other" / "colour.onnx", count=2, seed=11)
    assert run_cli("convert", other, "--target", "onnxruntime", "-o", tmp_path / "art2").code == 0
    shutil.copyfile(tmp_path / "art2" / "reference.npz", art / "reference.npz")
    _refused(run_cli("verify", art), "artifact file reference.npz does not match the sha256")


def test_an_exported_onnx_is_checked_against_its_reference(tmp_path, run_cli):
    src = _export_like(tmp_path / "colour.onnx")
    assert run_cli("verify", src).code == 0
    # the .onnx changed after export (or its .ref.npz is another export's): the sha256 differs
    model = onnx.load(str(src))
    model.doc_string = "edited after export"
    onnx.save(model, str(src))
    _all_refuse(run_cli, tmp_path, src, "was stored for another ONNX file", "colour.ref.npz")


def test_onnx_metadata_naming_another_input_is_refused(tmp_path, run_cli):
    src = colour_classifier_onnx(tmp_path / "colour.onnx")
    model = onnx.load(str(src))
    meta = read_onnx_metadata(src)
    meta["input"] = {**meta["input"], "height": 256, "width": 256}
    write_onnx_metadata(model, meta)
    onnx.save(model, str(src))
    _refused(run_cli("predict", src, tmp_path), "the graph takes [3, 224, 224]")


# -- malformed references and manifests (issue 13: exit 2, never the breach code) -----------------
def _reference_variants(path: Path) -> dict[str, tuple[bytes, str]]:
    good = path.read_bytes()
    keyless = io.BytesIO()
    np.savez(keyless, something=np.zeros(3, np.float32))
    no_outputs = io.BytesIO()
    np.savez(no_outputs, input=np.zeros((1, 3, 224, 224), np.float32))
    return {"truncated": (good[: len(good) // 2], "damaged or not an .npz archive"),
            "key-less": (keyless.getvalue(), "has no 'input' array"),
            "without outputs": (no_outputs.getvalue(), "has no output arrays"),
            "not an archive": (b"just text\n", "damaged or not an .npz archive")}


@pytest.mark.parametrize("case", ["truncated", "key-less", "without outputs", "not an archive"])
def test_a_malformed_reference_is_exit_2(tmp_path, run_cli, case):
    # next to an exported .onnx (nothing hashes it there) and in a folder whose hash was updated
    src = _export_like(tmp_path / "src" / "colour.onnx")
    assert run_cli("convert", src, "--target", "onnxruntime", "-o", tmp_path / "art").code == 0
    data, words = _reference_variants(src.with_suffix(".ref.npz"))[case]
    src.with_suffix(".ref.npz").write_bytes(data)
    _refused(run_cli("verify", src), "reference file", "colour.ref.npz", words)
    (tmp_path / "art" / "reference.npz").write_bytes(data)
    m = _manifest(tmp_path / "art")
    m["sha256"]["reference.npz"] = hashlib.sha256(data).hexdigest()
    _write_manifest(tmp_path / "art", m)
    _refused(run_cli("verify", tmp_path / "art"), "reference file", "reference.npz", words)


def test_a_reference_of_the_wrong_shape_is_exit_2(art, tmp_path, run_cli):
    x = np.zeros((2, 3, 112, 112), np.float32)
    save_reference(art / "reference.npz", x, [np.zeros((2, 1000), np.float32)], ["logits"])
    m = _manifest(art)
    m["sha256"]["reference.npz"] = hashlib.sha256((art / "reference.npz").read_bytes()).hexdigest()
    _write_manifest(art, m)
    _refused(run_cli("verify", art), "holds inputs of shape [3, 112, 112]")


@pytest.mark.parametrize("edit, words", [
    (lambda m: {k: v for k, v in m.items() if k != "model"}, ("has no 'model'",)),
    (lambda m: [m], ("holds a list, not an object",)),
    (lambda m: {**m, "files": ["model.onnx"]}, ("'files' must be an object, not a list",)),
    (lambda m: {**m, "variant": 18}, ("'variant' must be a string, not a number",)),
    (lambda m: {**m, "files": {**m["files"], "model": 3}}, ("files.model must be a file name",)),
    (lambda m: {**m, "target_options": None}, ("'target_options' must be an object, not null",)),
    (lambda m: {**m, "input": {**m["input"], "channels": "3"}}, ("'input.channels' must be a number",)),
])
def test_a_malformed_manifest_is_exit_2_for_every_command(art, tmp_path, run_cli, edit, words):
    _write_manifest(art, edit(_manifest(art)))
    _all_refuse(run_cli, tmp_path, art, "manifest.json", *words)


def test_an_untouched_artifact_still_opens_everywhere(art, tmp_path, run_cli):
    for cmd in _commands(tmp_path):
        res = run_cli(cmd[0], art, *cmd[1:])
        assert res.code in (0, 1), res  # eval's top-1 on synthetic colours is not the point here
    assert json.loads((art / "verify.json").read_text())["verdict"] == "pass"
    assert run_cli("verify", art).code == 0  # verify.json written into the folder is not hashed
