"""``hrdeploy ascend preprocess``: the .bin files hold exactly the tensors the model's pipeline feeds
the network, and prep_bin.info lists them in the ``index path width height`` layout the seeds'
ais_bench scripts read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classification_data import colour_classifier_onnx
from hrdeploy.io import read_image
from hrdeploy.model import PipelineRuntime, Sample, SampleRef
from hrdeploy.plugins import registry
from hrdeploy.synthetic import write_images


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-built network carrying hrnet_cls/w18 metadata: the ImageNet pipeline, no export."""
    return colour_classifier_onnx(tmp_path_factory.mktemp("prep") / "colour.onnx")


def pipeline_tensors(path: Path) -> list[np.ndarray]:
    """What hrnet_cls/w18's pipeline prepares for one image, computed apart from the command."""
    spec = registry().model("hrnet_cls")
    variant = spec.variant("w18")
    pipeline = spec.pipeline(variant, {}, runtime=PipelineRuntime.for_variant(variant))
    return [it.tensor for it in pipeline.prepare(Sample(SampleRef(path.name, path), read_image(path)))]


def test_bins_are_the_pipeline_tensors_byte_for_byte(model: Path, tmp_path: Path, run_cli) -> None:
    # portrait and landscape images of different sizes: resize-short and centre crop both matter
    images = write_images(tmp_path / "images", 2, size=(375, 500), seed=5)
    images += write_images(tmp_path / "images", 1, size=(240, 610), seed=9, prefix="wide")
    out = tmp_path / "bins"
    res = run_cli("ascend", "preprocess", model, tmp_path / "images", "-o", out)
    assert res.code == 0, res
    assert "wrote 3 .bin files for hrnet_cls/w18" in res.out

    expected_lines = []
    for index, path in enumerate(sorted(images)):
        (tensor,) = pipeline_tensors(path)
        assert tensor.shape == (3, 224, 224) and tensor.dtype == np.float32
        assert np.abs(tensor).max() > 0.5, "a real image, not a blank one"
        data = (out / f"{path.stem}.bin").read_bytes()
        assert data == np.ascontiguousarray(tensor, "<f4").tobytes(), f"{path.name}: .bin differs from the pipeline"
        expected_lines.append(f"{index} {out / (path.stem + '.bin')} 224 224")
    assert (out / "prep_bin.info").read_text() == "\n".join(expected_lines) + "\n"


def test_limit_takes_the_first_images_in_order(model: Path, tmp_path: Path, run_cli) -> None:
    images = write_images(tmp_path / "images", 3, seed=21)
    res = run_cli("ascend", "preprocess", model, tmp_path / "images", "-o", tmp_path / "bins", "--limit", "2")
    assert res.code == 0, res
    assert sorted(p.name for p in (tmp_path / "bins").glob("*.bin")) == [p.stem + ".bin" for p in images[:2]]
    first = np.fromfile(tmp_path / "bins" / f"{images[0].stem}.bin", "<f4").reshape(3, 224, 224)
    np.testing.assert_array_equal(first, pipeline_tensors(images[0])[0])
    assert (tmp_path / "bins" / "prep_bin.info").read_text().splitlines() == [
        f"{i} {tmp_path / 'bins' / (p.stem + '.bin')} 224 224" for i, p in enumerate(images[:2])]
