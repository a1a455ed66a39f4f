"""Nothing of the user's is deleted or overwritten (issue 14, item 4), through the command line:
``convert --force`` replaces only a folder hrdeploy wrote (or an empty one), no output is, holds
or lies inside an input, ``predict --vis`` never draws over its images, ``export`` keeps an
existing file without ``--force``, and a failed convert removes only the folder it created.
Every refusal is exit 2 with one line, and every file of the user's is still there, byte for
byte."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from classification_data import colour_classifier_onnx, colour_images

EXPORT = ("export", "hrnet_cls", "--variant", "w18_small_v1", "--random-weights")


def snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file under ``roots`` (or the file itself) with its bytes."""
    files: dict[str, bytes] = {}
    for root in roots:
        for p in ([root] if root.is_file() else sorted(root.rglob("*"))):
            if p.is_file():
                files[str(p)] = p.read_bytes()
    return files


def refused(res, *words: str) -> str:
    """The one error line of a refused command (exit 2), checked to name ``words``."""
    assert res.code == 2, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """An exported-model stand-in (the hand-built colour classifier) in a folder of its own."""
    (tmp_path / "models").mkdir()
    return colour_classifier_onnx(tmp_path / "models" / "m.onnx")


@pytest.fixture
def thesis(tmp_path: Path) -> Path:
    """A folder of the user's: a thesis and a sub-folder."""
    root = tmp_path / "thesis"
    (root / "figures").mkdir(parents=True)
    (root / "thesis.tex").write_text("\\documentclass{article}\n")
    (root / "figures" / "plot.pdf").write_bytes(b"%PDF-1.4 not really\n")
    return root


# -- convert -o DIR --force -----------------------------------------------------------------

def test_force_does_not_empty_a_folder_of_the_users(model, thesis, run_cli):
    before = snapshot(thesis, model.parent)
    line = refused(run_cli("convert", model, "-o", thesis, "--force"), "--force replaces only a folder hrdeploy wrote",
                   "thesis.tex")
    assert "figures" in line
    assert snapshot(thesis, model.parent) == before


def test_force_on_the_current_folder_is_refused(model, thesis, run_cli, monkeypatch):
    monkeypatch.chdir(thesis)
    before = snapshot(thesis, model.parent)
    refused(run_cli("convert", model, "-o", ".", "--force"), "-o .", "or an empty one")
    assert snapshot(thesis, model.parent) == before


def test_an_output_folder_holding_the_input_is_refused_even_with_force(model, run_cli):
    folder = model.parent
    before = snapshot(folder)
    refused(run_cli("convert", model, "-o", folder, "--force"), f"-o {folder} contains the input {model}")
    assert snapshot(folder) == before


def test_an_output_that_is_the_input_or_lies_inside_an_input_is_refused(model, tmp_path, run_cli):
    calib = tmp_path / "calib"
    colour_images(calib, per_colour=1)
    before = snapshot(model.parent, calib)
    refused(run_cli("convert", model, "-o", model, "--force"), f"-o {model} is the input {model}")
    refused(run_cli("convert", model, "--precision", "int8", "--calib", calib, "-o", calib / "art"),
            f"-o {calib / 'art'} lies inside the input {calib}")
    assert snapshot(model.parent, calib) == before
    assert not (calib / "art").exists()


def test_an_output_folder_that_is_a_file_is_refused(model, thesis, run_cli):
    before = snapshot(thesis)
    refused(run_cli("convert", model, "-o", thesis / "thesis.tex"), "is a file, but a folder is needed here")
    assert snapshot(thesis) == before


def test_force_replaces_an_artifact_hrdeploy_wrote_and_an_empty_folder(model, tmp_path, run_cli):
    art = tmp_path / "art"
    assert run_cli("convert", model, "-o", art).code == 0
    (art / "atc_old_run.log").write_text("a tool log of an earlier run\n")
    refused(run_cli("convert", model, "-o", art), "exists and is not empty", "--force")
    res = run_cli("convert", model, "-o", art, "--force")
    assert res.code == 0, res
    # replaced by a complete artifact, not merged into the old one
    assert json.loads((art / "manifest.json").read_text())["format"] == "hrdeploy-artifact/1"
    assert not (art / "atc_old_run.log").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("convert", model, "-o", empty, "--force").code == 0


def test_force_keeps_an_artifact_holding_files_hrdeploy_did_not_write(model, tmp_path, run_cli):
    art = tmp_path / "art"
    assert run_cli("convert", model, "-o", art).code == 0
    (art / "notes").mkdir()
    (art / "notes" / "results.md").write_text("my measurements\n")
    before = snapshot(art)
    refused(run_cli("convert", model, "-o", art, "--force"), "also holds notes/results.md, which it did not write")
    assert snapshot(art) == before


def test_a_folder_with_a_foreign_manifest_is_not_taken_for_an_artifact(model, tmp_path, run_cli):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"name": "my web app", "version": 3}\n')
    (folder / "index.html").write_text("<html></html>\n")
    before = snapshot(folder)
    refused(run_cli("convert", model, "-o", folder, "--force"), "--force replaces only a folder hrdeploy wrote")
    assert snapshot(folder) == before


# -- a failed convert -------------------------------------------------------------------------

@pytest.fixture
def bad_calib(tmp_path: Path) -> Path:
    """Calibration images of which one is corrupt: int8 conversion fails half-way, inside the
    target's convert, after the output folder was made."""
    calib = tmp_path / "bad_calib"
    colour_images(calib, per_colour=1)
    (calib / "zz_corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    return calib


def test_a_failed_convert_removes_the_folder_it_created(model, bad_calib, tmp_path, run_cli):
    out = tmp_path / "new" / "art"
    refused(run_cli("convert", model, "--precision", "int8", "--calib", bad_calib, "-o", out), "zz_corrupt.jpg")
    assert not (tmp_path / "new").exists()  # nor the parent it made for it


def test_a_failed_convert_leaves_a_folder_that_existed_before(model, bad_calib, tmp_path, run_cli):
    out = tmp_path / "made_by_user"
    out.mkdir()
    refused(run_cli("convert", model, "--precision", "int8", "--calib", bad_calib, "-o", out), "zz_corrupt.jpg")
    assert out.is_dir() and not any(out.iterdir())


# -- predict --vis ------------------------------------------------------------------------------

@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    colour_images(folder, per_colour=1)
    return folder


def test_vis_into_the_input_folder_is_refused(model, photos, run_cli):
    before = snapshot(photos)
    refused(run_cli("predict", model, photos, "--vis", photos), f"--vis {photos} is the input {photos}")
    refused(run_cli("predict", model, photos, "--vis", photos / "drawn"), "lies inside the input")
    one = sorted(photos.iterdir())[0]
    refused(run_cli("predict", model, one, "--vis", photos), f"--vis {photos} contains the input {one}")
    link = photos.parent / "link_to_photos"
    link.symlink_to(photos, target_is_directory=True)  # another name for the same folder
    refused(run_cli("predict", model, photos, "--vis", link), f"--vis {link} is the input {photos}")
    assert snapshot(photos) == before and not (photos / "drawn").exists()


def test_vis_elsewhere_draws_and_leaves_the_inputs_alone(model, photos, tmp_path, run_cli):
    before = snapshot(photos)
    res = run_cli("predict", model, photos, "--vis", tmp_path / "drawn")
    assert res.code == 0, res
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == sorted(p.name for p in photos.iterdir())
    assert snapshot(photos) == before


def test_predict_json_over_an_input_image_is_refused(model, photos, run_cli):
    before = snapshot(photos)
    one = sorted(photos.iterdir())[0]
    refused(run_cli("predict", model, photos, "--json", one), f"--json {one} is the input")
    assert snapshot(photos) == before


# -- export -o ------------------------------------------------------------------------------------

def test_export_keeps_an_existing_file_without_force(tmp_path, run_cli):
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"the user's own model\n")
    refused(run_cli(*EXPORT, "-o", mine), f"{mine} exists", "--force")
    assert mine.read_bytes() == b"the user's own model\n"
    # the reference written beside the .onnx is kept as well
    sidecar = tmp_path / "other.ref.npz"
    sidecar.write_bytes(b"reference of another export\n")
    refused(run_cli(*EXPORT, "-o", tmp_path / "other.onnx"), f"{sidecar} exists")
    assert sidecar.read_bytes() == b"reference of another export\n" and not (tmp_path / "other.onnx").exists()


def test_export_never_writes_over_or_into_an_input(tmp_path, run_cli):
    refs = tmp_path / "refs"
    colour_images(refs, per_colour=1)
    before = snapshot(refs)
    refused(run_cli(*EXPORT, "--ref-images", refs, "-o", refs / "m.onnx"), "lies inside the input")
    ckpt = tmp_path / "ckpt.onnx"
    ckpt.write_bytes(b"not a checkpoint, but an input all the same\n")
    refused(run_cli("export", "hrnet_cls", "--variant", "w18_small_v1", "--weights", ckpt, "-o", ckpt, "--force"),
            f"-o {ckpt} is the input {ckpt}")
    assert snapshot(refs) == before and ckpt.read_bytes().startswith(b"not a checkpoint")


def test_export_force_replaces_the_file(tmp_path, run_cli):
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"an older export\n")
    res = run_cli(*EXPORT, "-o", mine, "--force")
    assert res.code == 0, res
    assert mine.stat().st_size > 1000 and (tmp_path / "mine.ref.npz").is_file()


def test_eval_bench_and_ascend_preprocess_never_write_over_their_inputs(run_cli, tmp_path):
    from classification_data import colour_classifier_onnx, imagenet_label_layout

    model = colour_classifier_onnx(tmp_path / "colour.onnx")
    imagenet_label_layout(tmp_path / "data", per_colour=1)
    before = model.read_bytes()
    cases = [
        ("eval", model, "--data", f"imagenet:{tmp_path / 'data'}", "-o", model),
        ("eval", model, "--data", f"imagenet:{tmp_path / 'data'}", "-o", tmp_path / "data" / "val_label.txt"),
        ("bench", model, "--batch", "1", "--seconds", "0.05", "--no-e2e", "--json", model),
        ("ascend", "preprocess", model, tmp_path / "data" / "ILSVRC2012_img_val", "-o",
         tmp_path / "data" / "ILSVRC2012_img_val"),
    ]
    labels = (tmp_path / "data" / "val_label.txt").read_text()
    for args in cases:
        res = run_cli(*args)
        assert res.code == 2, res
        assert "hrdeploy does not write over its inputs" in res.err and "Traceback" not in res.err, res
    assert model.read_bytes() == before and (tmp_path / "data" / "val_label.txt").read_text() == labels
    assert not list((tmp_path / "data").rglob("*.bin"))
