"""The streaming loop: batching, padding for static batches, order and item grouping."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hrdeploy.stream import Stream, choose_batch, pad_to, run_arrays
from hrdeploy.errors import UserError
from hrdeploy.model import Item, Pipeline, SampleRef
from hrdeploy.target import Runner


class SumRunner(Runner):
    """Output = per-sample sum of the input: easy to check which row went where."""

    def __init__(self, batch_sizes=None, sizes=None):
        self.input_name = "image"
        self.output_names = ["sum"]
        self.batch_sizes = batch_sizes
        self.sizes = sizes
        self.calls: list[int] = []

    def run(self, feeds):
        x = feeds["image"]
        if self.batch_sizes:
            assert len(x) in self.batch_sizes
        self.calls.append(len(x))
        return [x.reshape(len(x), -1).sum(1).astype(np.float32)]


class TwoItemPipeline(Pipeline):
    """Each image gives two items (like a flip test) of a size that depends on the image."""

    params = {}

    def prepare(self, sample):
        v = float(sample.ref.info["v"])
        hw = sample.ref.info.get("hw", (2, 2))
        return [Item(np.full((1, *hw), v, np.float32)), Item(np.full((1, *hw), -v, np.float32))]

    def finish(self, sample, items, outputs):
        return {"a": float(outputs[0]["sum"]), "b": float(outputs[1]["sum"])}


def refs(n, hw=lambda i: (2, 2)):
    return [SampleRef(str(i), Path(f"{i}.jpg"), {"v": i + 1, "hw": hw(i)}) for i in range(n)]


def test_batch_choice():
    assert choose_batch(8, None) == 8
    assert choose_batch(8, (1, 4, 16)) == 4
    assert choose_batch(2, (4, 16)) == 4
    assert pad_to(3, (1, 4, 16)) == 4
    assert pad_to(20, (1, 4, 16)) == 16
    assert pad_to(3, None) == 3


@pytest.mark.parametrize("batch_sizes", [None, (4,), (1, 4)])
def test_stream_keeps_order_and_pads(batch_sizes, monkeypatch):
    import hrdeploy.stream as engine

    monkeypatch.setattr(engine, "read_image", lambda path: np.zeros((4, 4, 3), np.uint8))
    runner = SumRunner(batch_sizes)
    stream = Stream(TwoItemPipeline(), runner, batch=4, workers=2)
    got = list(stream.run(refs(7)))
    assert [r.id for r, _ in got] == [str(i) for i in range(7)]
    for i, (_, pred) in enumerate(got):
        assert pred == {"a": 4.0 * (i + 1), "b": -4.0 * (i + 1)}
    if batch_sizes == (4,):
        assert set(runner.calls) == {4} and stream.timings.padded_items == 2


def test_stream_groups_by_size_and_rejects_uncompiled_sizes(monkeypatch):
    import hrdeploy.stream as engine

    monkeypatch.setattr(engine, "read_image", lambda path: np.zeros((4, 4, 3), np.uint8))
    runner = SumRunner(None, sizes=((2, 2), (2, 3)))
    got = list(Stream(TwoItemPipeline(), runner, batch=2).run(refs(4, hw=lambda i: (2, 2 + i % 2))))
    assert [p["a"] for _, p in got] == [4.0, 12.0, 12.0, 24.0]
    bad = SumRunner(None, sizes=((2, 2),))
    with pytest.raises(UserError, match="not one the compiled model takes"):
        list(Stream(TwoItemPipeline(), bad, batch=2).run(refs(2, hw=lambda i: (2, 3))))


def test_corrupt_image_stops_or_is_skipped(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    ref = SampleRef("bad", bad, {"v": 1})
    with pytest.raises(UserError, match="corrupt"):
        list(Stream(TwoItemPipeline(), SumRunner(), batch=1).run([ref]))
    s = Stream(TwoItemPipeline(), SumRunner(), batch=1, skip_bad_images=True)
    assert list(s.run([ref])) == [] and s.skipped[0][0].id == "bad"


def test_run_arrays_pads_static_batches():
    x = np.arange(5 * 4, dtype=np.float32).reshape(5, 1, 2, 2)
    out = run_arrays(SumRunner((4,)), x)[0]
    np.testing.assert_allclose(out, x.reshape(5, -1).sum(1))
