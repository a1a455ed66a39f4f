"""Re-create the official reference outputs in tests/fixtures/ref/ (not a test; never imported).

Each fixture is the output of an *official* implementation run on seeded weights, so that the
plugins' own networks can be checked against the original code rather than against themselves.
The official code runs in a throwaway environment that is never a project dependency, and none
of it is stored in this repository.

1. Environment (CPU is enough; timm may pull CUDA wheels, they are not used)::

       python3 -m venv /tmp/refenv
       /tmp/refenv/bin/pip install torch==2.14.1 torchvision==0.29.1
       /tmp/refenv/bin/pip install timm yacs numpy        # timm 1.0.31 was current

2. Official sources, exported (not cloned into the repository) at the pinned commits::

       SRC=/tmp/refsrc
       git clone https://github.com/HRNet/HRNet-Image-Classification cls
       git -C cls archive f760c988482cdb8a1f69b10b219d669721144582 lib experiments | tar -x -C $SRC/hrnet_cls
       git clone https://github.com/HRNet/HRNet-Human-Pose-Estimation pose
       git -C pose archive 00d7bf72f56382165e504b10ff0dddb82dca6fd2 lib/models lib/config experiments/coco \\
           | tar -x -C $SRC/pose
       git clone https://github.com/HRNet/DEKR dekr
       git -C dekr archive 7a303139e92bdf3eab8d899415ccac37374285a4 lib/models lib/config experiments \\
           | tar -x -C $SRC/dekr
       git clone https://github.com/huggingface/pytorch-image-models timm
       git -C timm archive 5b28ef410062af2a2ab1f27bf02cf33e2ba28ca2 timm | tar -x -C $SRC/timm045   # v0.4.5
       git clone https://github.com/Ascend/ModelZoo-PyTorch ascend
       P=ACL_PyTorch/contrib/cv/classfication/TResNet/TResNet.patch
       git -C ascend show 05360171699bbe3bb1916bbafa84a445bd112e87:$P > $SRC/TResNet.patch

   (create the four $SRC sub-directories first; ``patch`` must be on PATH).

3. Run, from the repository root::

       /tmp/refenv/bin/python tests/reference_outputs/make_reference_outputs.py --src /tmp/refsrc
       # or only some: ... --src /tmp/refsrc tresnet_m_ascend hrnet_cls_w64

Every fixture runs in its own interpreter (the official repositories all call their package
``lib/models`` + ``lib/config``, and timm v0.4.5 and current timm are both ``timm``).

What each fixture is (details in its ``meta`` JSON string):

=============================  ===============================================================
tresnet_{m,l,xl}.npz           current timm ``timm.create_model("tresnet_x")`` (timm/models/
                               tresnet.py), manifest tresnet/tresnet_x.timm.json
tresnet_m_ascend.npz           timm v0.4.5 (5b28ef41) ``create_model("tresnet_m")`` with Ascend's
                               TResNet.patch applied (:func:`patch_v045_for_ascend`)
hrnet_cls_{w18_small_v2,w64}   HRNet-Image-Classification lib/models/cls_hrnet.py ``get_cls_net``
                               + experiments/cls_hrnet_<v>_sgd_lr5e-2_wd1e-4_bs32_x100.yaml
pose_hrnet_w48_256x192.npz     HRNet-Human-Pose-Estimation lib/models/pose_hrnet.py
                               ``get_pose_net(cfg, is_train=False)`` + experiments/coco/hrnet/
                               w48_256x192_adam_lr1e-3.yaml
dekr_hrnet_w48_640x640.npz     DEKR lib/models/hrnet_dekr.py ``get_pose_net(cfg, is_train=False)``
                               (torchvision.ops.DeformConv2d) + experiments/coco/w48/
                               w48_4x_reg03_bs5_640_adam_lr1e-3_coco_x140.yaml, at the 640x640 gear
=============================  ===============================================================

Weights: core/hrdeploy/testing/seeded.py (the same rules as the reference generator
seeded_weights.py: one generator per key seeded crc32(key) + 0, Box-Muller over float64
uniforms) on the key/shape manifests in tests/fixtures/official/, seed 0, loaded with
``load_state_dict(strict=True)``. DEKR's ``regular_matrix`` buffers are state_dict entries, so
they are seeded too (as in dekr_hrnet_w32_coco.npz).

Inputs: ``torch.randn(shape, generator=torch.Generator().manual_seed(1234))`` float32 NCHW, stored
in the fixture (tests read it, never regenerate it). The DEKR 640x640 input would be 4.9 MB in
float32, so it is stored exactly as ``input_int8`` with ``input = input_int8 * input_scale``
(scale 1/16, a power of two: the float32 product is exact), where input_int8 =
clip(round(randn * 16), -127, 127). Its outputs are stored on the grid rows = cols = ``grid``
(every 4th row/column plus the last one, borders included): (1, C, 41, 41) instead of
(1, C, 160, 160).

The classification inputs are identical to the one in hrnet_cls_w18.npz (same recipe; checked
byte for byte). The fixtures were made with torch 2.14.1 (+cu130 wheels, run on the CPU) and timm
1.0.31; re-running this script reproduced them bit for bit.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "tests" / "fixtures" / "official"
SEEDED = ROOT / "core" / "hrdeploy" / "testing" / "seeded.py"

COMMITS = {
    "timm045": ("huggingface/pytorch-image-models", "5b28ef410062af2a2ab1f27bf02cf33e2ba28ca2"),
    "hrnet_cls": ("HRNet/HRNet-Image-Classification", "f760c988482cdb8a1f69b10b219d669721144582"),
    "pose": ("HRNet/HRNet-Human-Pose-Estimation", "00d7bf72f56382165e504b10ff0dddb82dca6fd2"),
    "dekr": ("HRNet/DEKR", "7a303139e92bdf3eab8d899415ccac37374285a4"),
}
INPUT_SEED = 1234
WEIGHT_SEED = 0
DEKR_INPUT_SCALE = 1.0 / 16.0


def _seeded_state_dict(manifest: dict[str, Any]) -> Any:
    """The project's seeded-weights module, loaded by path (it needs only torch), so the
    throwaway environment does not install hrdeploy."""
    spec = importlib.util.spec_from_file_location("_hrdeploy_seeded", SEEDED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.seeded_state_dict(manifest, seed=WEIGHT_SEED)


def _manifest(rel: str) -> dict[str, Any]:
    return json.loads((MANIFESTS / rel).read_text(encoding="utf-8"))


def _randn(shape: tuple[int, ...]) -> Any:
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(INPUT_SEED))


def _input_recipe(shape: tuple[int, ...]) -> str:
    return (f"torch.randn({','.join(map(str, shape))}, generator=torch.Generator().manual_seed({INPUT_SEED})) "
            "float32 NCHW (stored, do not regenerate)")


def _base_meta(manifest: str, reference: str, function: str) -> dict[str, Any]:
    import torch

    return {"manifest": manifest, "weights": f"core/hrdeploy/testing/seeded.py seed {WEIGHT_SEED} "
            "(= seeded_weights.py --seed 0), load_state_dict(strict=True)",
            "reference": reference, "function": function, "mode": "eval",
            "torch": torch.__version__, "python": platform.python_version(),
            "generator": "tests/reference_outputs/make_reference_outputs.py"}


def _load(model: Any, manifest: dict[str, Any]) -> Any:
    model.load_state_dict(_seeded_state_dict(manifest), strict=True)
    return model.eval()


def _run(model: Any, x: Any) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        y = model(x)
    return [t.float().numpy() for t in (y if isinstance(y, (tuple, list)) else (y,))]


# --- TResNet -------------------------------------------------------------------------------

def tresnet_timm(size: str) -> Callable[[Path], dict[str, Any]]:
    def make(src: Path) -> dict[str, Any]:
        import timm

        model = _load(timm.create_model(f"tresnet_{size}", pretrained=False),
                      _manifest(f"tresnet/tresnet_{size}.timm.json"))
        x = _randn((2, 3, 224, 224))
        (logits,) = _run(model, x)
        meta = _base_meta(f"tresnet/tresnet_{size}.timm.json",
                          f"huggingface/pytorch-image-models timm=={timm.__version__} (pip) timm/models/tresnet.py",
                          f"timm.create_model('tresnet_{size}', pretrained=False)")
        meta.update(timm=timm.__version__, input=_input_recipe((2, 3, 224, 224)), output="logits (N,1000)")
        return {"input": x.numpy(), "logits": logits, "meta": meta}
    return make


ASCEND_PATCH = ("Ascend/ModelZoo-PyTorch", "05360171699bbe3bb1916bbafa84a445bd112e87",
                "ACL_PyTorch/contrib/cv/classfication/TResNet/TResNet.patch")


def patch_v045_for_ascend(src: Path, work: Path) -> Path:
    """A copy of timm v0.4.5's ``timm`` package in ``work`` with Ascend's TResNet.patch applied
    (``patch -p1``, as the Ascend guide does in the v0.4.5 checkout). For the network the patch
    means: nn.BatchNorm2d instead of InplaceAbn; LeakyReLU 0.01 in every activated conv2d_iabn
    (the blocks had 1e-3), those with act "identity" become Conv + BN; no @torch.jit.script on
    SpaceToDepthJit / DownsampleJIT; the blur pads with zeros, conv2d(padding=1), not reflect."""
    patch_file = src / "TResNet.patch"
    if not patch_file.is_file():
        raise SystemExit(f"{patch_file}: missing (see this script's docstring, step 2)")
    shutil.copytree(src / "timm045" / "timm", work / "timm")
    with patch_file.open("rb") as f:
        subprocess.run(["patch", "-p1", "--quiet"], stdin=f, cwd=work, check=True)
    return work


def ascend_manifest() -> dict[str, Any]:
    """v0.4.5 names with plain BatchNorm: a ``num_batches_tracked`` after every running_var."""
    keys: dict[str, list[int]] = {}
    for key, shape in _manifest("tresnet/tresnet_m.timm045.json")["keys"].items():
        keys[key] = shape
        if key.endswith(".running_var"):
            keys[key[: -len("running_var")] + "num_batches_tracked"] = []
    return {"keys": keys}


def tresnet_m_ascend(src: Path) -> dict[str, Any]:
    work = patch_v045_for_ascend(src, Path(tempfile.mkdtemp(prefix="timm045_ascend_")))
    sys.path.insert(0, str(work))
    import timm

    if timm.__version__ != "0.4.5" or not timm.__file__.startswith(str(work)):
        raise SystemExit(f"expected the patched timm 0.4.5 from {work}, got {timm.__version__} at {timm.__file__}")
    model = _load(timm.create_model("tresnet_m", pretrained=False), ascend_manifest())
    x = _randn((2, 3, 224, 224))
    (logits,) = _run(model, x)
    repo, commit = COMMITS["timm045"]
    patch_repo, patch_commit, patch_path = ASCEND_PATCH
    meta = _base_meta("tresnet/tresnet_m.timm045.json + num_batches_tracked after every running_var (Ascend layout)",
                      f"{repo}@{commit} (v0.4.5) timm/models/tresnet.py, patched with "
                      f"{patch_repo}@{patch_commit} {patch_path} (patch -p1): nn.BatchNorm2d instead of "
                      "InplaceAbn, LeakyReLU(0.01) in every activated conv2d_iabn (identity ones: Conv+BN), "
                      "no @torch.jit.script on SpaceToDepthJit/DownsampleJIT, blur conv2d(padding=1) "
                      "(zero pad) instead of reflect pad",
                      "timm.create_model('tresnet_m', pretrained=False) (no_aa_jit=False: DownsampleJIT path)")
    meta.update(input=_input_recipe((2, 3, 224, 224)), output="logits (N,1000)")
    return {"input": x.numpy(), "logits": logits, "meta": meta}


# --- the HRNet repositories ----------------------------------------------------------------

def _official_lib(src: Path, repo: str) -> Path:
    lib = src / repo / "lib"
    if not (lib / "models").is_dir():
        raise SystemExit(f"{lib}: official sources missing (see this script's docstring, step 2)")
    sys.path.insert(0, str(lib))
    return src / repo


def hrnet_cls(variant: str) -> Callable[[Path], dict[str, Any]]:
    def make(src: Path) -> dict[str, Any]:
        base = _official_lib(src, "hrnet_cls")
        from config import config
        from models.cls_hrnet import get_cls_net

        yaml = f"experiments/cls_hrnet_{variant}_sgd_lr5e-2_wd1e-4_bs32_x100.yaml"
        config.defrost()
        config.merge_from_file(str(base / yaml))
        model = _load(get_cls_net(config), _manifest(f"hrnet_cls/{variant}.official.json"))
        x = _randn((2, 3, 224, 224))
        (logits,) = _run(model, x)
        repo, commit = COMMITS["hrnet_cls"]
        meta = _base_meta(f"hrnet_cls/{variant}.official.json", f"{repo}@{commit} lib/models/cls_hrnet.py + {yaml}",
                          "get_cls_net(config)")
        meta.update(input=_input_recipe((2, 3, 224, 224)), output="logits (N,1000)")
        return {"input": x.numpy(), "logits": logits, "meta": meta}
    return make


def pose_hrnet_w48_256x192(src: Path) -> dict[str, Any]:
    base = _official_lib(src, "pose")
    from config import cfg
    from models.pose_hrnet import get_pose_net

    yaml = "experiments/coco/hrnet/w48_256x192_adam_lr1e-3.yaml"
    cfg.defrost()
    cfg.merge_from_file(str(base / yaml))
    model = _load(get_pose_net(cfg, is_train=False), _manifest("pose/pose_hrnet_w48_256x192.json"))
    x = _randn((2, 3, 256, 192))
    (heatmaps,) = _run(model, x)
    repo, commit = COMMITS["pose"]
    meta = _base_meta("pose/pose_hrnet_w48_256x192.json", f"{repo}@{commit} lib/models/pose_hrnet.py + {yaml}",
                      "get_pose_net(cfg, is_train=False)")
    meta.update(input=_input_recipe((2, 3, 256, 192)),
                output="heatmaps: raw final_layer output (N,17,H/4,W/4), full, no flip test, no post-processing")
    return {"input": x.numpy(), "heatmaps": heatmaps, "meta": meta}


def output_grid(size: int) -> np.ndarray:
    """Rows (= columns) stored of a DEKR output map: every 4th plus the last, borders included."""
    return np.array(sorted(set(range(0, size, 4)) | {size - 1}), dtype=np.int64)


def dekr_hrnet_w48_640x640(src: Path) -> dict[str, Any]:
    import torch

    base = _official_lib(src, "dekr")
    from config import cfg
    from models.hrnet_dekr import get_pose_net

    yaml = "experiments/coco/w48/w48_4x_reg03_bs5_640_adam_lr1e-3_coco_x140.yaml"
    cfg.defrost()
    cfg.merge_from_file(str(base / yaml))
    model = _load(get_pose_net(cfg, is_train=False), _manifest("pose/dekr_hrnet_w48_coco.json"))
    q = torch.clamp(torch.round(_randn((1, 3, 640, 640)) / DEKR_INPUT_SCALE), -127, 127).to(torch.int8)
    x = q.float() * DEKR_INPUT_SCALE
    heatmap, offset = _run(model, x)
    grid = output_grid(heatmap.shape[-1])
    assert heatmap.shape[-2] == heatmap.shape[-1]
    repo, commit = COMMITS["dekr"]
    meta = _base_meta("pose/dekr_hrnet_w48_coco.json (regular_matrix buffers included: state_dict entries, "
                      "so seeded too)",
                      f"{repo}@{commit} lib/models/hrnet_dekr.py + lib/models/conv_block.py "
                      f"(torchvision.ops.DeformConv2d) + {yaml}", "get_pose_net(cfg, is_train=False)")
    meta.update(
        input=(f"input = input_int8.astype(float32) * input_scale (exact), input_int8 = clamp(round("
               f"{_input_recipe((1, 3, 640, 640)).split(' float32')[0]} / {DEKR_INPUT_SCALE}), -127, 127); "
               "the 640x640 gear of w48"),
        output=("heatmap (N,18,H/4,W/4): 17 joints + centre last; offset (N,34,H/4,W/4); raw outputs, no flip; "
                "both stored SUBSAMPLED at rows = cols = grid (every 4th + the last): full[..., grid, :][..., grid]"),
        heatmap_absmax_full=float(np.abs(heatmap).max()), offset_absmax_full=float(np.abs(offset).max()))
    return {"input_int8": q.numpy(), "input_scale": np.float32(DEKR_INPUT_SCALE), "grid": grid,
            "heatmap": heatmap[..., grid, :][..., grid], "offset": offset[..., grid, :][..., grid], "meta": meta}


FIXTURES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "tresnet_m": tresnet_timm("m"),
    "tresnet_l": tresnet_timm("l"),
    "tresnet_xl": tresnet_timm("xl"),
    "tresnet_m_ascend": tresnet_m_ascend,
    "hrnet_cls_w18_small_v2": hrnet_cls("w18_small_v2"),
    "hrnet_cls_w64": hrnet_cls("w64"),
    "pose_hrnet_w48_256x192": pose_hrnet_w48_256x192,
    "dekr_hrnet_w48_640x640": dekr_hrnet_w48_640x640,
}


def make_one(name: str, src: Path, out_dir: Path) -> None:
    import torch

    torch.set_num_threads(2)
    data = FIXTURES[name](src)
    meta = json.dumps(data.pop("meta"))
    arrays = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in data.items()}
    path = out_dir / f"{name}.npz"
    np.savez_compressed(path, meta=np.array(meta), **arrays)
    shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in arrays.items())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {shapes}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help=f"fixtures to make (default all: {', '.join(FIXTURES)})")
    p.add_argument("--src", type=Path, required=True, help="directory with hrnet_cls/ pose/ dekr/ timm045/")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "ref")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child: make names[0] here
    args = p.parse_args(argv)
    unknown = sorted(set(args.names) - set(FIXTURES))
    if unknown:
        p.error(f"unknown fixture(s) {', '.join(unknown)}")
    if args.one:
        make_one(args.names[0], args.src.resolve(), args.out.resolve())
        return 0
    for name in args.names or FIXTURES:
        subprocess.run([sys.executable, __file__, "--one", "--src", str(args.src), "--out", str(args.out), name],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
