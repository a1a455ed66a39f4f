"""Session fixtures of the hrnet_pose tests: the big networks are built once."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def pose_manifests(fixtures_dir: Path) -> dict[str, dict[str, Any]]:
    """Official key -> shape manifests per variant name (and the mmpose ones by file stem)."""
    folder = fixtures_dir / "official" / "pose"
    out = {p.stem.replace("pose_hrnet_", ""): json.loads(p.read_text()) for p in folder.glob("pose_hrnet_*.json")}
    assert {"w32_256x192", "w32_384x288", "w48_256x192", "w48_384x288"} <= set(out)
    return out


@pytest.fixture(scope="session")
def seeded_w32(pose_manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Seed-0 weights of pose_hrnet w32 (the reference generator's)."""
    from hrdeploy.testing.seeded import seeded_state_dict

    return seeded_state_dict(pose_manifests["w32_256x192"], seed=0)


@pytest.fixture(scope="session")
def w32_model(seeded_w32: dict[str, Any]) -> Any:
    """pose_hrnet w32 with the seeded weights, loaded through the plugin's loader."""
    from hrdeploy_hrnet_pose.spec import HRNetPoseSpec
    from hrdeploy_hrnet_pose.weights import load_checkpoint_object

    spec = HRNetPoseSpec()
    model = spec.build(spec.variant("w32_256x192"))
    load_checkpoint_object(model, dict(seeded_w32), 32)
    return model.eval()
