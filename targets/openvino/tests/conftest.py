"""Fixtures of the OpenVINO target's tests: a real small HRNet (W18-small-v1, seeded random
weights) exported once per session, calibration images and an ImageNet-format folder made of
generated photographs."""
from __future__ import annotations

from pathlib import Path

import pytest

from hrdeploy.synthetic import write_images


@pytest.fixture(scope="session")
def ov_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openvino")


@pytest.fixture(scope="session")
def small_hrnet(ov_work: Path) -> Path:
    """HRNet-W18-small-v1 with seeded random weights (torch is needed for the export only)."""
    pytest.importorskip("torch")
    from hrdeploy.cli import main

    onnx_path = ov_work / "w18s.onnx"
    try:
        main(["export", "hrnet_cls", "--variant", "w18_small_v1", "--random-weights", "-o", str(onnx_path)])
    except SystemExit as e:
        assert not e.code, f"export failed with exit code {e.code}"
    assert onnx_path.is_file()
    return onnx_path


@pytest.fixture(scope="session")
def calib_dir(ov_work: Path) -> Path:
    """16 generated photographs: 8 calibrate, the next 8 are convert's held-out parity inputs."""
    write_images(ov_work / "calib", 16, seed=80)
    return ov_work / "calib"


@pytest.fixture(scope="session")
def imagenet_dir(ov_work: Path) -> Path:
    """An ImageNet validation folder (val_label.txt + ILSVRC2012_img_val/) of 6 generated images."""
    root = ov_work / "imagenet"
    paths = write_images(root / "ILSVRC2012_img_val", 6, seed=40, prefix="ILSVRC2012_val")
    (root / "val_label.txt").write_text("".join(f"{p.name} {7 * i}\n" for i, p in enumerate(paths)))
    return root
