"""The model spec: variants, options, the rescoring file carried into artifacts, the task check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hrdeploy.errors import WeightsError
from hrdeploy.model import PipelineRuntime
from hrdeploy_dekr.rescore import Rescorer
from hrdeploy_dekr.spec import RESCORE_CHECKPOINT, RESCORE_FILE


def test_variants_declare_gears_and_batch_one(spec) -> None:
    w32, w48 = spec.variant("w32"), spec.variant("w48")
    assert spec.task == "pose-bottomup" and spec.dataset_kinds == ("coco",)
    assert w32.input.fixed_size is None and w32.input.batch == 1
    assert w32.input.sizes == ((512, 768), (512, 512), (768, 512), (512, 1024), (1024, 512))
    assert w48.extra["input_size"] == 640 and all(640 in g for g in w48.input.gears)
    assert w32.outputs == ("heatmap", "offset")
    assert spec.dynamic_axes(w32, dynamic_batch=False)["image"] == {2: "height", 3: "width"}
    assert spec.example_input(w32, batch=4).shape == (1, 3, 512, 768)
    assert {"flip", "scales", "rescore"} <= set(spec.options)


def test_options_arrive_as_strings(spec) -> None:
    pipe = spec.pipeline(spec.variant("w32"), {"flip": "no", "scales": "2,0.5,1", "rescore": "off"},
                         runtime=PipelineRuntime())
    assert pipe.params["flip"] is False and pipe.params["scales"] == [2.0, 1.0, 0.5]
    assert pipe.params["rescore"].startswith("off")


@pytest.fixture
def rescore_pth(rescore_state, tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / RESCORE_CHECKPOINT
    torch.save({"module." + k: v for k, v in rescore_state.items()}, path)
    return path


def test_rescore_net_travels_as_npz(spec, rescore_pth: Path, rescore_state, tmp_path: Path) -> None:
    variant = spec.variant("w32")
    # from the option
    files = spec.artifact_files(variant, None, {"rescore": str(rescore_pth)})
    assert list(files) == [RESCORE_FILE]
    # found next to the pose checkpoint (the guide keeps both in models/)
    assert spec.artifact_files(variant, rescore_pth.parent / "pose_dekr_hrnetw32_coco.pth") == files
    assert spec.artifact_files(variant, tmp_path / "elsewhere.pth") == {}
    assert spec.artifact_files(variant, rescore_pth.parent / "x.pth", {"rescore": "off"}) == {}
    npz = tmp_path / "dekr.rescore.npz"
    npz.write_bytes(files[RESCORE_FILE])
    pipe = spec.pipeline(variant, {}, runtime=PipelineRuntime(files={RESCORE_FILE: npz}))
    assert pipe.params["rescore"] == "on (dekr.rescore.npz)"
    feats = np.random.default_rng(0).normal(size=(5, 74)).astype(np.float32)
    net = torch.nn.Sequential(torch.nn.Linear(74, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 1))
    net.load_state_dict({k.replace("l1", "0").replace("l2", "2").replace("l3", "4"): v
                         for k, v in rescore_state.items()})
    with torch.no_grad():
        want = net(torch.from_numpy(feats))[:, 0].numpy()
    np.testing.assert_allclose(pipe.rescorer.predict(feats), want, rtol=0, atol=1e-5)


def test_rescore_option_rejects_the_pose_checkpoint(tmp_path: Path) -> None:
    from hrdeploy_dekr.rescore import rescorer_from_checkpoint

    path = tmp_path / "pose_dekr_hrnetw32_coco.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3),
                "offset_feature_layers.0.0.regular_matrix": torch.zeros(2, 9)}, path)
    with pytest.raises(WeightsError, match="pose network checkpoint"):
        rescorer_from_checkpoint(path)
    with pytest.raises(WeightsError, match="lack"):
        Rescorer({"l1.weight": np.zeros((256, 74))})


def test_task_check_flags_moved_keypoints(spec, ref_post) -> None:
    variant = spec.variant("w32")
    hm, off = ref_post["s1_heatmap"], ref_post["s1_offset"]
    same = spec.task_check(variant, [hm, off], [hm.copy(), off.copy()], variant.tolerance("fp32"))
    assert same.passed and same.value == 0.0
    moved = off.copy()
    moved[:, 0::2] += 0.5            # every joint 0.5 map px = 2 input px to the left
    bad = spec.task_check(variant, [hm, off], [hm, moved], variant.tolerance("fp32"))
    assert not bad.passed and bad.value == pytest.approx(2.0, abs=1e-3)
    lost = hm.copy()
    lost[:, 17] = 0                  # the test run finds no person
    assert not spec.task_check(variant, [hm, off], [lost, off], variant.tolerance("int8")).passed
