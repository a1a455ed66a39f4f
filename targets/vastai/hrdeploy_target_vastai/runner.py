"""Runs a vamc build through vaststreamx (``import vaststreamx as vsx``, imported at open).

Graph: ``vsx.Model(prefix, batch)`` -> ``vsx.ModelOperator`` in a ``vsx.Graph`` -> ``vsx.Stream``
(``StreamBalanceMode.ONCE``), outputs registered on the model operator.

Two ways in (option ``input_mode``):

* ``tensor`` (default): the already-normalised NCHW tensor from hrdeploy's pipeline, converted
  to fp16 and tensorised on the host into the device's activation layout, then
  ``vsx.from_numpy(..., device_id)``. The layout is VastModelZOO's ``get_activation_aligned``
  (``vastai_common`` utilities): blocks of 4 channels x 8 rows x 8 columns, ordered
  (N, W/8, H/8, C/4, 256) with c%4, h%8, w%8 inside a block, zero-padded.
* ``image``: uint8 RGB planar pixels (the pipeline's tensor with its normalisation inverted)
  through the vdsp fusion op of the artifact's vdsp_params JSON, which normalises on the
  device (the path of VastModelZOO's runstream samples).

Outputs come back fp16; they are returned as float32.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.target import Runner

from .configs import SETUP_HINT
from .preprocess import Preprocess

BLOCK_C, BLOCK_H, BLOCK_W = 4, 8, 8


def tensorize_fp16(x: np.ndarray) -> np.ndarray:
    """NCHW -> the device's fp16 activation layout (N, W/8, H/8, C/4, 4*8*8)."""
    n, c, h, w = x.shape
    pc, ph, pw = -c % BLOCK_C, -h % BLOCK_H, -w % BLOCK_W
    a = np.pad(x.astype(np.float16), ((0, 0), (0, pc), (0, ph), (0, pw)))
    cn, hn, wn = a.shape[1] // BLOCK_C, a.shape[2] // BLOCK_H, a.shape[3] // BLOCK_W
    a = a.reshape(n, cn, BLOCK_C, hn, BLOCK_H, wn, BLOCK_W)
    # -> (n, wn, hn, cn, c%4, h%8, w%8)
    return np.ascontiguousarray(a.transpose(0, 5, 3, 1, 2, 4, 6)).reshape(n, wn, hn, cn, BLOCK_C * BLOCK_H * BLOCK_W)


def import_vsx() -> Any:
    try:
        import vaststreamx as vsx
    except ImportError as e:
        raise ToolchainMissing(f"vaststreamx is not importable here ({e})", SETUP_HINT) from None
    return vsx


def _the_input(feeds: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The one input array: by name, or the only one given under another name."""
    x = feeds.get(name)
    if x is None and len(feeds) == 1:
        x = next(iter(feeds.values()))
    if x is None:
        raise UserError(f"the model input is {name!r}; got {sorted(feeds)}")
    return x


class VastaiRunner(Runner):
    def __init__(self, prefix: Path, device_id: int, *, input_name: str, output_names: Sequence[str],
                 size: tuple[int, int], channels: int = 3, batch: int = 1, input_mode: str = "tensor",
                 vdsp_json: Path | None = None, preprocess: Preprocess | None = None, label_extra: str = "") -> None:
        if input_mode not in ("tensor", "image"):
            raise UserError(f"input_mode must be tensor or image, got {input_mode!r}")
        if input_mode == "image" and (vdsp_json is None or preprocess is None):
            raise UserError("input_mode image needs the artifact's vdsp_params and preprocessing")
        vsx = import_vsx()
        self.vsx = vsx
        self.device_id = int(device_id)
        if vsx.set_device(self.device_id) != 0:
            raise UserError(f"vaststreamx could not open device {self.device_id}",
                            "check the die id with vasmi / ls /dev/vastai*")
        self.input_name = input_name
        self.input_mode = input_mode
        self.preprocess = preprocess
        self.size = (int(size[0]), int(size[1]))
        self.channels = channels
        self.sizes = (self.size,)
        self.batch_sizes = None  # the stream batches requests itself
        self.model = vsx.Model(str(prefix), int(batch))
        self.model_op = vsx.ModelOperator(self.model)
        out_type = getattr(getattr(vsx, "GraphOutputType", None), "GRAPH_OUTPUT_TYPE_NCHW_HOST", None)
        self.graph = vsx.Graph(out_type) if out_type is not None else vsx.Graph()
        if input_mode == "image":
            ops = vsx.Operator.load_ops_from_json_file(str(vdsp_json))
            if not ops:
                raise UserError(f"vaststreamx could not load the vdsp op from {vdsp_json}")
            self.graph.add_operators(*ops, self.model_op)
        else:
            self.graph.add_operators(self.model_op)
        self.stream = vsx.Stream(self.graph, vsx.StreamBalanceMode.ONCE)
        self.stream.register_operator_output(self.model_op)
        self.stream.build()
        self.output_names = list(output_names)
        self.label = (f"vaststreamx on VastAI die {self.device_id} ({Path(str(prefix)).name}, {input_mode} input"
                      f"{', ' + label_extra if label_extra else ''})")

    def _inputs(self, x: np.ndarray) -> list[Any]:
        vsx = self.vsx
        if self.input_mode == "tensor":
            return [[vsx.from_numpy(tensorize_fp16(x[i:i + 1]), self.device_id)] for i in range(len(x))]
        assert self.preprocess is not None
        pixels = self.preprocess.to_uint8_nchw(x)
        if self.preprocess.color == "bgr":  # the vdsp op takes RGB and converts (ColorCvtCode RGB2BGR)
            pixels = pixels[:, ::-1]
        h, w = self.size
        return [vsx.create_image(np.ascontiguousarray(p), vsx.ImageFormat.RGB_PLANAR, w, h, self.device_id)
                for p in pixels]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = _the_input(feeds, self.input_name)
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[2:]) != self.size or x.shape[1] != self.channels:
            raise UserError(f"this build takes {self.channels}x{self.size[0]}x{self.size[1]} inputs, got {x.shape[1:]}")
        results = self.stream.run_sync(self._inputs(x))
        if len(results) != len(x):
            raise UserError(f"vaststreamx returned {len(results)} results for {len(x)} inputs")
        per_sample = [[np.asarray(self.vsx.as_numpy(t), dtype=np.float32) for t in res] for res in results]
        n_out = len(per_sample[0])
        outs = []
        for k in range(n_out):
            parts = [s[k] for s in per_sample]
            # one sample per request: outputs come with or without their batch axis
            outs.append(np.concatenate(parts) if parts[0].ndim >= 1 and parts[0].shape[:1] == (1,)
                        else np.stack(parts))
        if self.output_names and len(self.output_names) != n_out:
            raise UserError(f"the build returns {n_out} outputs, the model declares {len(self.output_names)}")
        if not self.output_names:
            self.output_names = [f"output{i}" for i in range(n_out)]
        return outs

    def close(self) -> None:
        stream = getattr(self, "stream", None)
        if stream is not None and hasattr(stream, "close_input"):
            try:
                stream.close_input()
                stream.wait_until_done()
            except RuntimeError:
                pass
        self.stream = None


class GearRunner(Runner):
    """One vamc build per size gear (vamc compiles one shape per build): dispatch each batch
    to the build of its (H, W), opening builds on first use."""

    def __init__(self, factories: dict[tuple[int, int], Any], input_name: str, output_names: Sequence[str]) -> None:
        self._factories = dict(factories)
        self._runners: dict[tuple[int, int], VastaiRunner] = {}
        self.input_name = input_name
        self.output_names = list(output_names)
        self.sizes = tuple(self._factories)
        self.batch_sizes = None
        first = self._get(self.sizes[0])
        self.label = first.label + f" + {len(self.sizes) - 1} more gear build(s)"

    def _get(self, size: tuple[int, int]) -> VastaiRunner:
        if size not in self._runners:
            if size not in self._factories:
                raise UserError(f"input size {size[0]}x{size[1]} is not a compiled gear "
                                f"({', '.join(f'{h}x{w}' for h, w in self._factories)})",
                                "the pipeline must snap images to the artifact's gears")
            self._runners[size] = self._factories[size]()
        return self._runners[size]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = _the_input(feeds, self.input_name)
        runner = self._get((int(x.shape[2]), int(x.shape[3])))
        outs = runner.run({self.input_name: x})
        self.output_names = runner.output_names
        return outs

    def close(self) -> None:
        for r in self._runners.values():
            r.close()
        self._runners.clear()
