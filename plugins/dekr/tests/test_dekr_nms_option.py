"""DEKR's pose-NMS threshold is a declared option (``--nms-threshold``): the official
multi-scale configuration uses 0.15 where the single-scale one uses 0.05."""
from __future__ import annotations

import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy_dekr.postprocess import DecodeConfig, nms_core
from hrdeploy_dekr.spec import DEKRSpec


def _two_people(shift: float) -> np.ndarray:
    """Two 17-joint poses on a 100 x 100 px extent (sqrt(area) = 141.4), the second moved by
    ``shift`` px in x: the same person for the NMS when shift < threshold * 141.4."""
    base = np.stack([np.linspace(0, 100, 17), np.linspace(0, 100, 17)], axis=1)
    return np.stack([base, base + [shift, 0.0]]).astype(np.float32)


@pytest.mark.parametrize("threshold, kept", [(0.05, [0, 1]), (0.15, [1])])
def test_the_threshold_decides_whether_two_close_poses_are_one_person(threshold, kept):
    coords = _two_people(shift=14.0)  # 0.05 * 141.4 = 7.1 px < 14 px < 21.2 px = 0.15 * 141.4
    scores = np.array([0.2, 0.9], np.float32)
    assert nms_core(coords, scores, DecodeConfig(nms_threshold=threshold)) == kept


def test_the_option_reaches_the_decoder_and_is_recorded():
    spec = DEKRSpec()
    variant = spec.variant("w32")
    assert spec.pipeline(variant).cfg.nms_threshold == 0.05  # the official single-scale default
    pipe = spec.pipeline(variant, {"nms_threshold": 0.15})
    assert pipe.cfg.nms_threshold == 0.15 and pipe.params["decode.nms_threshold"] == 0.15
    assert spec.pipeline(variant, {"nms_threshold": "0.15"}).cfg.nms_threshold == 0.15  # --opt form
    with pytest.raises(UserError, match="--nms-threshold must be between 0 and 1"):
        spec.pipeline(variant, {"nms_threshold": 1.5})


def test_the_flag_is_generated_from_the_declaration(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich shortens long option names in narrow help
    res = run_cli("eval", "--help")
    assert res.code == 0 and "--nms-threshold" in res.out and "0.15 in the multi-scale" in " ".join(res.out.split())
