"""Several runners of one host (``--replicas`` on onnxruntime, ``--devices`` elsewhere): the
result equals the single-runner one but for timing and runner fields, the work is spread,
an interrupted multi-runner run resumes exactly, and failures are one line."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path
from typing import Any, Iterator

import pytest

from classification_data import colour_classifier_onnx, imagenet_label_layout
from hrdeploy.errors import UserError
from hrdeploy.evaluation import in_dataset_order
from hrdeploy.executor import Finished
from hrdeploy.model import SampleRef
from hrdeploy.target import Placement, Target

#: the fields allowed to differ between executors (hrdeploy.executor)
_RUN_FIELDS = {"timing", "created", "runner", "threads"}


def _same_result(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert {k: v for k, v in a.items() if k not in _RUN_FIELDS} == {k: v for k, v in b.items() if k not in _RUN_FIELDS}


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("devices_cls")
    imagenet_label_layout(root / "inet", per_colour=5)
    return {"root": root / "inet", "model": colour_classifier_onnx(root / "colour.onnx")}


@pytest.mark.parametrize("batch", [1, 3])
def test_replicas_give_the_single_runner_result(imagenet, tmp_path, run_cli, batch):
    data = f"imagenet:{imagenet['root']}"
    one = run_cli("eval", imagenet["model"], "--data", data, "-o", tmp_path / "one.json", "--batch", str(batch))
    assert one.code == 0, one
    two = run_cli("eval", imagenet["model"], "--data", data, "-o", tmp_path / "two.json", "--batch", str(batch),
                  "--replicas", "2")
    assert two.code == 0, two
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("one.json", "two.json"))
    _same_result(a, b)
    assert a["metric"]["top1"] == 100.0 and a["data"]["evaluated"] == 15
    per_worker = b["timing"]["per_worker"]
    assert set(per_worker) == set(b["timing"]["workers"]) and len(per_worker) == 2
    assert sum(per_worker.values()) == 15 and all(n > 0 for n in per_worker.values())
    assert sum(b["timing"]["per_host"].values()) == 15
    assert b["runner"].startswith("2 x onnxruntime") and "1 threads" in b["runner"]
    assert a["timing"]["per_worker"] == {next(iter(a["timing"]["workers"])): 15}
    assert not list(tmp_path.glob("*.partial.jsonl"))
    assert not mp.active_children()


def test_top_down_pose_on_replicas_equals_one_runner(tmp_path, run_cli):
    from hrdeploy_hrnet_pose.synthetic import build_constant_heatmap_onnx, build_synthetic_coco, onnx_metadata_for

    coco = build_synthetic_coco(tmp_path / "coco")
    model = build_constant_heatmap_onnx(tmp_path / "const.onnx", metadata=onnx_metadata_for())
    common = ["--data", f"coco:{coco['root']}", "--boxes", str(coco["detections"]), "--batch", "4"]
    one = run_cli("eval", model, *common, "-o", tmp_path / "one" / "r.json")
    assert one.code == 0, one
    two = run_cli("eval", model, *common, "-o", tmp_path / "two" / "r.json", "--replicas", "2")
    assert two.code == 0, two
    a, b = (json.loads((tmp_path / n / "r.json").read_text()) for n in ("one", "two"))
    _same_result(a, b)
    for k, v in coco["stats_detections"].items():
        assert b["metric"][k] == pytest.approx(v, abs=1e-6), k
    # the COCO results file the metric writes is identical too (fed in dataset order)
    assert (tmp_path / "one" / a["files"]["coco_results.json"]).read_bytes() == \
        (tmp_path / "two" / b["files"]["coco_results.json"]).read_bytes()
    assert sum(b["timing"]["per_worker"].values()) == a["data"]["evaluated"]


class _StopAfter:
    """Wraps an executor and interrupts the run (as Ctrl-C would) after ``n`` samples."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner, self.n = inner, n
        self.batch, self.timings = inner.batch, inner.timings

    def predictions(self, todo: list[SampleRef]) -> Iterator[Finished]:
        for k, f in enumerate(self.inner.predictions(todo)):
            if k == self.n:
                raise KeyboardInterrupt
            yield f

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def test_an_interrupted_multi_runner_run_resumes_exactly(imagenet, tmp_path):
    from hrdeploy.devices import DevicePool
    from hrdeploy.evaluation import evaluate
    from hrdeploy.plugins import registry
    from hrdeploy.session import open_session

    data = f"imagenet:{imagenet['root']}"
    with open_session(registry(), imagenet["model"], target_options={"replicas": 2}) as session:
        ref = evaluate(session, data, tmp_path / "ref.json", log=lambda m: None).document
        out = tmp_path / "r.json"
        with pytest.raises(KeyboardInterrupt):
            evaluate(session, data, out, log=lambda m: None, executor=lambda plan: _StopAfter(DevicePool(plan), 6))
        assert not mp.active_children()  # the interrupted run stopped its workers
        lines = (tmp_path / "r.json.partial.jsonl").read_text().splitlines()
        assert len(lines) == 1 + 6 and all(json.loads(ln)["worker"].split("/")[1].startswith("replica:")
                                            for ln in lines[1:])
        got = evaluate(session, data, out, resume=True, log=lambda m: None, executor=DevicePool).document
    _same_result(ref, got)
    assert got["timing"]["resumed"] == 6 and sum(got["timing"]["per_worker"].values()) == 15 - 6


def test_placements_per_target():
    base = Target()
    assert [(p.device, p.slot) for p in base.split_devices("0, 1,2", {"x": 1})] == \
        [("0", "dev:0"), ("1", "dev:1"), ("2", "dev:2")]
    assert [p.device for p in base.split_devices(None, {})] == [None]
    for bad, what in (("0,,1", "comma-separated"), ("1,1", "twice")):
        with pytest.raises(UserError, match=what):
            base.split_devices(bad, {})
    from hrdeploy.targets.onnxruntime.target import OnnxRuntimeTarget

    ort = OnnxRuntimeTarget()
    reps = ort.split_devices(None, {"replicas": 3, "threads": 2})
    assert [(p.slot, p.options["threads"]) for p in reps] == [("replica:0", 2), ("replica:1", 2), ("replica:2", 2)]
    assert all(p.options["threads"] >= 1 for p in ort.split_devices(None, {"replicas": 64}))
    with pytest.raises(UserError, match="--replicas"):
        ort.split_devices("0,1", {})


def test_refusals_are_one_line(imagenet, tmp_path, run_cli):
    data = f"imagenet:{imagenet['root']}"
    res = run_cli("eval", imagenet["model"], "--data", data, "-o", tmp_path / "r.json", "--devices", "0,1")
    assert res.code == 2 and "--replicas" in res.err and len(res.err.strip().splitlines()) == 1
    res = run_cli("eval", imagenet["model"], "--data", data, "-o", tmp_path / "r.json", "--replicas", "2",
                  "--compare", imagenet["model"])
    assert res.code == 2 and "--compare" in res.err
    assert not (tmp_path / "r.json.partial.jsonl").exists()  # refused before anything was written


def test_a_worker_that_cannot_open_its_runner_is_one_line(imagenet):
    from hrdeploy.devices import WorkerPool

    with pytest.raises(UserError, match=r"/bad: onnxruntime provider\(s\) not available"):
        WorkerPool(Path(imagenet["model"]), [Placement(None, {}, "ok"), Placement("nosuch", {}, "bad")],
                   None, {}, 1, 1)
    assert not mp.active_children()


def _refs(n: int) -> list[SampleRef]:
    return [SampleRef(f"s{i}", Path(f"s{i}.jpg")) for i in range(n)]


def test_merge_in_dataset_order_and_id_checks():
    refs = _refs(5)
    done = {"s1": {"p": 1}}
    arrived: list[str] = []
    fresh = [Finished(refs[i], {"p": i}, [], "h/w") for i in (4, 0, 3, 2)]
    got = list(in_dataset_order(refs, done, iter(fresh), lambda f: arrived.append(f.ref.id)))
    assert [r.id for r, _ in got] == ["s0", "s1", "s2", "s3", "s4"] and [p["p"] for _, p in got] == [0, 1, 2, 3, 4]
    assert arrived == ["s4", "s0", "s3", "s2"]
    for fresh, what in (([Finished(refs[0], {}, [], "h/a"), Finished(refs[0], {}, [], "h/b")], "twice"),
                        ([Finished(SampleRef("zz", Path("z")), {}, [], "h/a")], "not asked for"),
                        ([Finished(refs[0], {}, [], "h/a")], "without 3 of the samples")):
        with pytest.raises(UserError, match=what):
            list(in_dataset_order(refs, done, iter(fresh), lambda f: None))


def test_bench_on_replicas_reports_each_runner_and_the_sum(imagenet, tmp_path, run_cli):
    res = run_cli("bench", imagenet["model"], "--replicas", "2", "--batch", "2", "--seconds", "0.2",
                  "--warmup", "1", "--json", tmp_path / "b.json")
    assert res.code == 0, res
    rep = json.loads((tmp_path / "b.json").read_text())
    assert rep["devices"] == ["replica:0", "replica:1"] and rep["runner"].startswith("2 x onnxruntime")
    assert [r["batch"] for r in rep["results"]] == [2]
    for row in rep["results"]:
        per = row["per_device"]
        assert [d["worker"].split("/")[1] for d in per] == ["replica:0", "replica:1"]
        assert row["device_ips"] == pytest.approx(sum(d["device_ips"] for d in per), abs=0.01)
        assert row["iterations"] == sum(d["iterations"] for d in per)
        assert {"mean", "p50", "p90", "p99"} <= set(row["latency_ms"]) and all(d["latency_ms"]["p50"] > 0 for d in per)
        assert row["e2e_ips"] > 0 and set(row["e2e_per_device"]) == {d["worker"] for d in per}
        assert row["e2e_images"] >= 3 * row["batch"] * 2
    assert "per device (measured at once)" in res.out and "replica:1" in res.out
    assert not mp.active_children()
