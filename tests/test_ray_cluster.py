"""``eval --ray`` on a two-node Ray cluster simulated on this machine (ray.cluster_utils.Cluster,
each node with one ``hrdev`` device resource, so the pool gets one actor per node): the
classification and top-down pose results equal the single-process ones exactly, the work is
spread over both nodes, a killed actor loses and doubles nothing, an interrupted run resumes."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install 'hrdeploy[ray]'")

from classification_data import colour_eval_case
from hrdeploy_hrnet_pose.synthetic import (
    build_constant_heatmap_onnx,
    build_synthetic_coco,
    onnx_metadata_for,
)

#: what one actor reserves: the node's one device and its one CPU
PER_ACTOR = '{"hrdev": 1, "CPU": 1}'
#: the result fields that may differ between where samples ran (hrdeploy.executor)
RUN_FIELDS = {"timing", "created", "runner", "threads"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"hrdev": 1},
                                                      "include_dashboard": False})
    try:
        c.add_node(num_cpus=1, resources={"hrdev": 1})
        c.wait_for_nodes()
        yield c.address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def cls_data(tmp_path_factory) -> dict[str, Any]:
    return colour_eval_case(tmp_path_factory.mktemp("raycls"))  # 12 images, 3 classes


@pytest.fixture(scope="module")
def many_data(tmp_path_factory) -> dict[str, Any]:
    """48 images: enough blocks that an actor killed at its first result still has work queued."""
    return colour_eval_case(tmp_path_factory.mktemp("raymany"), 16)


@pytest.fixture(scope="module")
def pose_data(tmp_path_factory) -> dict[str, Any]:
    from hrdeploy.cli import main

    root = tmp_path_factory.mktemp("raypose")
    coco = build_synthetic_coco(root / "coco")
    model = build_constant_heatmap_onnx(root / "const.onnx", metadata=onnx_metadata_for())
    args = ["--data", f"coco:{coco['root']}", "--batch", "4", "--boxes", str(coco["detections"])]
    local = root / "local" / "r.json"
    main(["eval", str(model), *args, "-o", str(local)])
    return {"model": model, "args": args, "local": local}


def same_result(got: Path, want: Path) -> dict[str, Any]:
    """The cluster result equals the local one but for the fields of where it ran; the files
    written beside it (COCO results) are equal too. Returns the cluster result."""
    a, b = json.loads(got.read_text()), json.loads(want.read_text())
    assert {k: v for k, v in a.items() if k not in RUN_FIELDS} == {k: v for k, v in b.items() if k not in RUN_FIELDS}
    for name in (b.get("files") or {}).values():
        assert (got.parent / name).read_bytes() == (want.parent / name).read_bytes()
    assert not got.with_name(got.name + ".partial.jsonl").exists()
    return a


def assert_spread(result: dict[str, Any], images: int) -> None:
    per_host = result["timing"]["per_host"]
    assert len(per_host) == 2 and all(n > 0 for n in per_host.values()), per_host
    assert sum(per_host.values()) == sum(result["timing"]["per_worker"].values()) == images
    assert result["timing"]["ray"]["nodes"] == 2 and result["timing"]["ray"]["actors"] == 2
    assert result["runner"].startswith("ray: 2 actors on 2 nodes")


def test_classification_on_two_nodes_equals_the_local_run(cluster, cls_data, tmp_path, run_cli):
    out = tmp_path / "r.json"
    res = run_cli("eval", cls_data["model"], "--data", cls_data["data"], "-o", out,
                  "--ray", cluster, "--ray-resources", PER_ACTOR)
    assert res.code == 0, res
    assert "ray: 2 actors of" in res.err and "on 2 nodes" in res.err
    r = same_result(out, cls_data["local"])
    assert r["metric"]["top1"] == 100.0
    assert_spread(r, 12)
    assert r["timing"]["ray"]["redelivered"] == 0
    assert set(r["timing"]["workers"]) == set(r["timing"]["per_worker"])


def test_topdown_pose_on_two_nodes_equals_the_local_run(cluster, pose_data, tmp_path, run_cli):
    out = tmp_path / "r.json"
    res = run_cli("eval", pose_data["model"], *pose_data["args"], "-o", out,
                  "--ray", cluster, "--ray-resources", PER_ACTOR)
    assert res.code == 0, res
    r = same_result(out, pose_data["local"])
    assert r["task"] == "pose-topdown" and r["batch"] == 4
    assert_spread(r, r["data"]["evaluated"])


def _session(model: Path) -> Any:
    from hrdeploy.plugins import registry
    from hrdeploy.session import open_session

    return open_session(registry(), model)


def test_a_killed_actor_loses_and_doubles_nothing(cluster, many_data, tmp_path):
    """The actor that delivered the first sample is killed (SIGKILL) while the run goes on:
    Ray restarts it and runs its unfinished blocks again; every sample is counted once."""
    from hrdeploy.cluster import ray_executor
    from hrdeploy.evaluation import evaluate

    killed: list[str] = []
    factory = ray_executor(cluster, resources=json.loads(PER_ACTOR), log=lambda _m: None)

    def killing(plan: Any) -> Any:
        ex = factory(plan)
        run = ex.predictions

        def predictions(todo: list[Any]) -> Iterator[Any]:
            inner = run(todo)
            try:
                for f in inner:
                    if not killed:
                        os.kill(int(f.worker.rsplit(":", 1)[1]), signal.SIGKILL)
                        killed.append(f.worker)
                    yield f
            finally:
                inner.close()

        ex.predictions = predictions
        return ex

    out = tmp_path / "r.json"
    with _session(many_data["model"]) as session:
        evaluate(session, many_data["data"], out, executor=killing, log=lambda _m: None)
    r = same_result(out, many_data["local"])
    pid = int(killed[0].rsplit(":", 1)[1])
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):  # it really died
        os.kill(pid, 0)
    assert sum(r["timing"]["per_worker"].values()) == 48
    assert len(r["timing"]["per_host"]) == 2


def test_an_interrupted_cluster_run_resumes_exactly(cluster, cls_data, tmp_path, run_cli):
    from hrdeploy.cluster import ray_executor
    from hrdeploy.evaluation import evaluate

    def progress(total: int, done: int) -> Any:
        count = [0]

        def tick(n: int) -> None:
            count[0] += n
            if count[0] == 5:
                raise KeyboardInterrupt

        return tick

    out = tmp_path / "r.json"
    with _session(cls_data["model"]) as session, pytest.raises(KeyboardInterrupt):
        evaluate(session, cls_data["data"], out, progress=progress, log=lambda _m: None,
                 executor=ray_executor(cluster, resources=json.loads(PER_ACTOR), log=lambda _m: None))
    partial = out.with_name(out.name + ".partial.jsonl")
    records = [json.loads(line) for line in partial.read_text().splitlines()[1:]]
    assert len(records) == 5 and all("/actor:" in rec["worker"] for rec in records)
    assert not out.exists()
    res = run_cli("eval", cls_data["model"], "--data", cls_data["data"], "-o", out, "--resume",
                  "--ray", cluster, "--ray-resources", PER_ACTOR)
    assert res.code == 0, res
    assert "resuming: 5 of 12" in res.err
    r = same_result(out, cls_data["local"])
    assert r["timing"]["resumed"] == 5 and sum(r["timing"]["per_worker"].values()) == 7
