"""``eval --ray`` on a local Ray (``ray.init(num_cpus=2)``, the connection this process opened
is the one the command uses), the refusals of ``--ray``, and the pieces of
:mod:`hrdeploy.cluster` on their own: the id ledger, the artifact shipping, the decoding."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install 'hrdeploy[ray]'")

from classification_data import colour_eval_case
from hrdeploy.errors import UserError
from hrdeploy.model import SampleRef

RUN_FIELDS = {"timing", "created", "runner", "threads"}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a cluster found running
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def cls_data(tmp_path_factory) -> dict[str, Any]:
    return colour_eval_case(tmp_path_factory.mktemp("raylocal"), 2, "--batch", "2")


def test_local_ray_run_equals_the_single_process_run(local_ray, cls_data, tmp_path, run_cli):
    out = tmp_path / "r.json"
    res = run_cli("eval", cls_data["model"], "--data", cls_data["data"], "-o", out, "--batch", "2", "--ray", "auto")
    assert res.code == 0, res
    assert ray.is_initialized()  # the connection this process opened is left open
    a, b = json.loads(out.read_text()), json.loads(cls_data["local"].read_text())
    assert {k: v for k, v in a.items() if k not in RUN_FIELDS} == {k: v for k, v in b.items() if k not in RUN_FIELDS}
    assert a["metric"]["top1"] == 100.0 and a["batch"] == 2
    ray_info = a["timing"]["ray"]
    assert ray_info["actors"] == 2 and ray_info["resources_per_actor"] == {"CPU": 1.0}  # onnxruntime's, --threads unset
    assert sum(a["timing"]["per_worker"].values()) == 6
    # each actor's session ran with the one CPU it reserved, not every core of the node
    assert all(label.endswith("1 threads") for label in a["timing"]["workers"].values())
    assert all(a["timing"]["per_image_ms"][s] >= 0 for s in ("decode", "preprocess", "infer", "postprocess"))


def test_without_ray_the_flag_says_how_to_install_it(cls_data, tmp_path, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as when it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    res = run_cli("eval", cls_data["model"], "--data", cls_data["data"], "-o", tmp_path / "r.json", "--ray", "auto")
    assert res.code == 2, res
    assert "pip install 'hrdeploy[ray]'" in res.err and len(res.err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json.partial.jsonl").exists()


@pytest.mark.parametrize("args, says", [
    (["--ray", "auto", "--devices", "0,1"], "--ray and --devices contradict each other"),
    (["--ray-actors", "2"], "only apply to a cluster run"),
    (["--ray", "auto", "--ray-resources", "[1]"], "--ray-resources expects a JSON object"),
    (["--ray", "auto", "--ray-resources", '{"NPU": 1}'], "the Ray cluster has too little 'NPU'"),
])
def test_refusals_are_one_line_and_leave_nothing(local_ray, cls_data, tmp_path, run_cli, args, says):
    res = run_cli("eval", cls_data["model"], "--data", cls_data["data"], "-o", tmp_path / "r.json", *args)
    assert res.code == 2, res
    assert says in res.err and len(res.err.strip().splitlines()) == 1, res.err
    assert not list(tmp_path.iterdir())


def test_compare_is_refused_with_ray(local_ray, cls_data, tmp_path, run_cli):
    res = run_cli("eval", cls_data["model"], "--data", cls_data["data"], "-o", tmp_path / "r.json",
                  "--ray", "auto", "--compare", cls_data["model"])
    assert res.code == 2 and "cannot be combined with --ray" in res.err, res


def _refs(*ids: str) -> list[SampleRef]:
    return [SampleRef(k, Path(k)) for k in ids]


def test_the_ledger_counts_each_sample_once():
    from hrdeploy.cluster import IdLedger

    ledger = IdLedger(_refs("a", "b", "c"))
    assert ledger.take("a", '{"x": 1}') and ledger.take("b", '{"x": 2}')
    assert not ledger.take("a", '{"x": 1}')  # a retried block's identical repeat
    assert ledger.redelivered == 1
    with pytest.raises(UserError, match="twice with different predictions"):
        ledger.take("b", '{"x": 3}')
    with pytest.raises(UserError, match="'z', which was not asked for"):
        ledger.take("z", "{}")
    with pytest.raises(UserError, match="no prediction for 1 image of 3 \\(c\\)"):
        ledger.check_complete()
    assert ledger.take("c", "{}") and ledger.check_complete() is None


def test_the_artifact_ships_whole_and_reopens_identically(cls_data, tmp_path):
    """An artifact folder and an exported .onnx with its reference are rebuilt byte for byte
    from what goes into the object store; names leaving the folder are refused."""
    from hrdeploy.artifact import Artifact
    from hrdeploy.cli import main
    from hrdeploy.cluster import pack_artifact, unpack_artifact

    folder = tmp_path / "art"
    main(["convert", str(cls_data["model"]), "--target", "onnxruntime", "-o", str(folder)])
    for art in (Artifact.load(folder), Artifact.load(cls_data["model"])):
        entry, files = pack_artifact(art)
        dest = tmp_path / f"unpacked-{entry}"
        unpack_artifact(files, dest)
        opened = Artifact.load(dest / entry)
        opened.check_integrity()
        for role, p in art.files().items():
            if p.is_file():
                assert opened.files()[role].read_bytes() == p.read_bytes()
        assert opened.manifest["model"] == art.manifest["model"]
    with pytest.raises(UserError, match="outside its folder"):
        unpack_artifact({"../evil": b"x"}, tmp_path / "x")


def test_decoding_bytes_is_reading_the_file(cls_data):
    from hrdeploy.cluster import decode_image
    from hrdeploy.io import read_image

    for p in sorted((cls_data["root"] / "data").rglob("*.JPEG"))[:3]:
        assert np.array_equal(decode_image(p.read_bytes(), p), read_image(p))
    with pytest.raises(UserError, match="cannot decode image bad.jpg"):
        decode_image(b"not a jpeg", Path("bad.jpg"))


def test_each_target_declares_what_its_actors_reserve():
    """Ascend chips are Ray Core's "NPU" (Ray makes the assigned one device 0 of the actor),
    Sophon and VastAI are custom resources (no ids: the target's default device), onnxruntime
    reserves the CPUs of its --threads."""
    from hrdeploy.plugins import registry

    reg = registry()
    ort = reg.target("onnxruntime")
    assert ort.ray_resources({}) == {"CPU": 1.0} and ort.ray_resources({"threads": 3}) == {"CPU": 3.0}
    assert ort.ray_device({"GPU": [], "NPU": []}) is None
    ascend = reg.target("ascend")
    assert ascend.ray_resources({}) == {"NPU": 1.0}
    assert ascend.ray_device({"NPU": ["2"]}) == "0" and ascend.ray_device({"NPU": []}) is None
    assert reg.target("sophon").ray_resources({}) == {"sophon": 1.0}
    assert reg.target("vastai").ray_resources({}) == {"vastai": 1.0}
    assert reg.target("sophon").ray_device({"NPU": ["1"]}) is None
