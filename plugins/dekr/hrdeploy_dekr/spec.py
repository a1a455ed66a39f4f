"""The ``dekr`` model: bottom-up DEKR HRNet pose (every person of an image in one pass)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hrdeploy.errors import UserError
from hrdeploy.model import Dataset, ModelSpec, OptionSpec, PipelineRuntime, TaskCheck, Tolerance, Variant, parse_option
from hrdeploy.tasks.pose import coco_keypoint_dataset, describe_people, draw_people

from .pipeline import DEKRPipeline, resize_params
from .postprocess import DecodeConfig, ScaleMaps, top_centres
from .rescore import Rescorer, rescorer_from_checkpoint
from .variants import VARIANTS

if TYPE_CHECKING:
    import torch

#: role (and file-name suffix) of the rescoring weights next to the ONNX file / in artifacts
RESCORE_FILE = "rescore.npz"
#: the official file name; export picks it up from the checkpoint's folder when no
#: ``rescore`` option is given (the Ascend guide keeps both files in models/)
RESCORE_CHECKPOINT = "final_rescore_coco_kpt.pth"

OPTIONS = {
    "flip": OptionSpec("flip test: also run the mirrored image (shifted 3 px) and average", True, bool),
    "scales": OptionSpec("test scales, e.g. 0.5,1,2 (must include 1; needs a runtime without size "
                         "gears)", [1.0], list),
    "rescore": OptionSpec(f"rescoring net: {RESCORE_CHECKPOINT} or its .npz (export carries it next "
                          "to the ONNX file; 'off' disables rescoring)", None, str),
    "adapt_conv": OptionSpec("export form of the adaptive convolutions: grid_sample (standard operators, "
                             "opset 17, what the vendor compilers take) or deformconv (one DeformConv node "
                             "each, needs --opset 19; about 2.4x faster end to end on onnxruntime CPU)",
                             "grid_sample", str),
    "nms_threshold": OptionSpec("pose NMS: two people are one when their joints lie closer than this times "
                                "the square root of the pose area (official TEST.NMS_THRE: 0.05 single-scale, "
                                "0.15 in the multi-scale configuration)", 0.05, float),
    "ann": OptionSpec("COCO person_keypoints JSON (default: found under --data)", None, str),
    "images": OptionSpec("folder with the annotation file's images (default: found under --data)", None, str),
}


def _option(opts: dict[str, Any], name: str) -> Any:
    """An option's value, parsed when it arrives as a command-line string (``--opt k=v``)."""
    spec = OPTIONS[name]
    value = opts.get(name, spec.default)
    if isinstance(value, str):
        return parse_option(spec, value)
    if spec.type is list and isinstance(value, (int, float)):
        return [float(value)]
    return value


def width_of(variant: Variant) -> int:
    return int(variant.extra["width"])


class DEKRSpec(ModelSpec):
    name = "dekr"
    task = "pose-bottomup"
    description = ("bottom-up DEKR HRNet human pose (w32 input 512 / w48 input 640, COCO 17 "
                   "keypoints, flip test, rescoring net)")
    variants = VARIANTS
    dataset_kinds = ("coco",)
    options = OPTIONS

    # -- export ----------------------------------------------------------------------------------
    def build(self, variant: Variant, options: dict[str, Any] | None = None) -> "torch.nn.Module":
        from .model import ADAPT_IMPLS, DEKRNet

        impl = _option(options or {}, "adapt_conv")
        if impl not in ADAPT_IMPLS:
            raise UserError(f"adaptive conv form {impl!r} unknown", "choose one of: " + ", ".join(ADAPT_IMPLS))
        return DEKRNet(width_of(variant), adapt_impl=impl).eval()

    def load_weights(self, module: "torch.nn.Module", path: Path, variant: Variant) -> str:
        from .weights import load_dekr_weights

        return load_dekr_weights(module, Path(path), width_of(variant))

    def example_input(self, variant: Variant, batch: int = 1, seed: int = 0) -> np.ndarray:
        # DEKR runs one image at a time (the gears are batch 1), at the first gear
        return super().example_input(variant, batch=1, seed=seed)

    def artifact_files(self, variant: Variant, weights: Path | None,
                       options: dict[str, Any] | None = None) -> dict[str, bytes]:
        """The rescoring net as ``.npz`` (numpy only at deployment): from the ``rescore`` option,
        else ``final_rescore_coco_kpt.pth`` found next to the pose checkpoint."""
        path = self._rescore_source(weights, options)
        if path is None:
            return {}
        return {RESCORE_FILE: rescorer_from_checkpoint(path).to_npz_bytes()}

    @staticmethod
    def _rescore_source(weights: Path | None, options: dict[str, Any] | None) -> Path | None:
        given = (options or {}).get("rescore")
        if given and str(given).lower() not in ("off", "none", "no", "false"):
            return Path(given)
        if given is None and weights is not None and (Path(weights).parent / RESCORE_CHECKPOINT).is_file():
            return Path(weights).parent / RESCORE_CHECKPOINT
        return None

    # -- runtime ---------------------------------------------------------------------------------
    def pipeline(self, variant: Variant, options: dict[str, Any] | None = None,
                 runtime: PipelineRuntime | None = None) -> DEKRPipeline:
        opts = {k: v for k, v in (options or {}).items() if v is not None}
        runtime = runtime or PipelineRuntime()
        rescorer, note = self._rescorer(opts.get("rescore"), runtime.files)
        return DEKRPipeline(
            input_size=int(variant.extra["input_size"]), output_size=int(variant.extra["output_size"]),
            output_names=variant.outputs, flip=_option(opts, "flip"), scales=_option(opts, "scales"),
            gears=runtime.sizes or None, nms_threshold=_option(opts, "nms_threshold"),
            rescorer=rescorer, rescore_note=note)

    @staticmethod
    def _rescorer(option: Any, files: dict[str, Any]) -> tuple[Rescorer | None, str]:
        if option is not None and str(option).lower() in ("off", "none", "no", "false"):
            return None, "off (disabled by the rescore option): scores are the pose scores"
        if option:
            r = rescorer_from_checkpoint(Path(option))
            return r, f"on ({Path(option).name})"
        path = files.get(RESCORE_FILE) or files.get("rescore")
        if path is not None and Path(path).is_file():
            return Rescorer.from_npz(path), f"on ({Path(path).name})"
        return None, ("off: no rescore weights with the model (export with --set rescore="
                      f"{RESCORE_CHECKPOINT}); scores are the pose scores")

    def network_size(self, variant: Variant, height: int, width: int) -> tuple[int, int]:
        """The official resize at scale 1 (short side ``input_size``, long side rounded up to a
        multiple of 64), as the pipeline computes it without gears."""
        (w_in, h_in), _, _ = resize_params(height, width, int(variant.extra["input_size"]), 1.0, None)
        return (h_in, w_in)

    def dataset(self, kind: str, path: Path, options: dict[str, Any] | None = None) -> Dataset:
        if kind != "coco":
            return super().dataset(kind, path, options)
        return coco_keypoint_dataset(Path(path), options, mode="bottomup")

    def draw(self, image: np.ndarray, prediction: dict[str, Any]) -> np.ndarray:
        return draw_people(image, prediction.get("people", []))

    def describe(self, prediction: dict[str, Any]) -> str:
        return describe_people(prediction)

    def task_check(self, variant: Variant, reference: list[np.ndarray], test: list[np.ndarray],
                   tolerance: Tolerance) -> TaskCheck:
        """Both runs decoded without flip: the person centres the reference finds (centre NMS,
        top 30 above 0.01), and the keypoint error in input pixels of the test's poses at those
        centres. Passes when the mean error is within ``tolerance.task`` and the test finds
        the same centres."""
        cfg = DecodeConfig(input_size=int(variant.extra["input_size"]),
                           output_size=int(variant.extra["output_size"]))
        errs: list[np.ndarray] = []
        found = total = 0
        for n in range(len(reference[0])):
            ref = ScaleMaps(1.0, reference[0][n], reference[1][n])
            got = ScaleMaps(1.0, test[0][n], test[1][n])
            idx, _ = top_centres(ref, cfg)
            idx_got, _ = top_centres(got, cfg)
            found += len(set(idx.tolist()) & set(idx_got.tolist()))
            total += len(idx)
            w = ref.hw[1]
            a = ref.pose_at(idx // w, idx % w).astype(np.float64)
            b = got.pose_at(idx // w, idx % w).astype(np.float64)
            errs.append(np.linalg.norm(a - b, axis=-1).ravel() * cfg.ratio)
        err = np.concatenate(errs) if errs else np.zeros(0)
        mean = float(err.mean()) if err.size else 0.0
        worst = float(err.max()) if err.size else 0.0
        same = found == total
        passed = same and (tolerance.task is None or mean <= tolerance.task)
        limit = "" if tolerance.task is None else f" (limit {tolerance.task:g})"
        return TaskCheck("keypoint error (px)", mean, passed,
                         f"keypoint error mean {mean:.3g} px{limit}, max {worst:.3g} px over {err.size} "
                         f"joints of {total} reference people; {found}/{total} person centres found again")
