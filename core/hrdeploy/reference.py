"""The reference inputs and outputs every parity check uses: inputs made by the model's own
preprocessing (from the user's images or synthetic photographs), run through ONNX Runtime fp32
on the exported file. export stores them beside the .onnx, convert inside the artifact; verify,
bench (on a simulator) and eval --compare compare against them."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .io import read_image
from .model import Item, ModelSpec, PipelineRuntime, Sample, SampleRef, Variant


def reference_inputs(spec: ModelSpec, variant: Variant, images: Sequence[Path] | None, count: int = 4,
                     seed: int = 7, options: dict[str, Any] | None = None) -> np.ndarray:
    """Network inputs made by the model's own preprocessing from ``images`` (or from
    synthetic images): the inputs parity checks and verify use."""
    from .synthetic import make_image

    pipeline = spec.pipeline(variant, options or {}, runtime=PipelineRuntime.for_variant(variant))
    items: list[Item] = []
    sources = list(images or [])
    for i in range(max(count, len(sources)) if sources else count):
        if sources:
            if i >= len(sources):
                break
            image, ref = read_image(sources[i]), SampleRef(sources[i].name, sources[i])
        else:
            h, w = _image_size_for(variant, i)
            image, ref = make_image(h, w, seed + i), SampleRef(f"synthetic_{i}", Path(f"synthetic_{i}.jpg"))
        items.extend(pipeline.prepare(Sample(ref, image)))
    if not items:
        raise UserError("no reference inputs could be made")
    common = Counter(tuple(it.tensor.shape) for it in items).most_common(1)[0][0]
    chosen = [it.tensor for it in items if tuple(it.tensor.shape) == common][:count]
    return np.stack(chosen).astype(np.float32)


def _image_size_for(variant: Variant, i: int) -> tuple[int, int]:
    size = variant.input.fixed_size or (variant.input.gears[0] if variant.input.gears else (480, 640))
    h, w = size
    # portrait and landscape photographs around the network size
    return (int(h * 1.5), int(w * 1.5)) if i % 2 == 0 else (int(h * 1.5), int(w * 1.2))


def run_onnx(path: Path, x: np.ndarray) -> list[np.ndarray]:
    """ONNX Runtime fp32 outputs for a stack of inputs, in batches the file accepts (a
    batch-1 export such as DEKR's runs one input at a time)."""
    from .ort_runner import OrtRunner
    from .stream import run_arrays

    return run_arrays(OrtRunner(path), x)
