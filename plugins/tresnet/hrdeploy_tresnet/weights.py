"""TResNet checkpoint layouts and how each one becomes the module's state_dict.

Three layouts exist in the wild:

``timm``      current timm (0.8 and later): ``body.conv1.conv/bn``, BatchNorm with
              ``num_batches_tracked``; loaded as is.
``timm045``   timm up to 0.6 and the MIIL release files (v0.4.5 is what Ascend pins):
              ``body.conv1.0`` conv + ``body.conv1.1`` InplaceABN, blurred convs nested one
              level deeper (``conv1.0.0``/``conv1.0.1``), no ``num_batches_tracked``. InplaceABN
              scales by ``|gamma| + eps``, so each weight becomes ``abs(w) + 1e-5`` in plain BN.
``ascend``    Ascend's TResNet.patch on v0.4.5: the same names but plain BatchNorm (with
              ``num_batches_tracked``), so the weights are copied without abs/eps. It was
              trained for the patched network and only loads into the ``m_ascend`` variant.

The renaming is the one timm applies to old checkpoints; its result is compared key by key
and shape by shape with the module before a strict load, and anything that does not fit is
reported on one line saying what the file looks like instead.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from hrdeploy.checkpoints import KeyMismatch, read_checkpoint, unwrap_state_dict
from hrdeploy.errors import WeightsError

if TYPE_CHECKING:
    import torch

IABN_EPS = 1e-5

# (stem width, layer3 depth) -> variant; both are read from any layout
SIZES = {(64, 11): "m", (76, 18): "l", (83, 24): "xl"}

# v0.4.5 name -> current name. Blurred stride-2 convs are nested (conv, IABN) inside the
# sequence that also holds the blur, so the two-level forms must be rewritten first.
_RENAMES = (
    (re.compile(r"\.conv(\d+)\.0\.0\."), r".conv\1.conv."),
    (re.compile(r"\.conv(\d+)\.0\.1\."), r".conv\1.bn."),
    (re.compile(r"\.conv(\d+)\.0\."), r".conv\1.conv."),
    (re.compile(r"\.conv(\d+)\.1\."), r".conv\1.bn."),
    (re.compile(r"\.downsample\.(\d+)\.0\."), r".downsample.\1.conv."),
    (re.compile(r"\.downsample\.(\d+)\.1\."), r".downsample.\1.bn."),
)


def detect_layout(sd: Mapping[str, Any]) -> str | None:
    """``timm``, ``timm045``, ``ascend``, or None when this is not a TResNet checkpoint."""
    if "body.conv1.conv.weight" in sd:
        return "timm"
    if "body.conv1.0.weight" in sd and "body.conv1.1.weight" in sd:
        has_counters = any(k.endswith(".num_batches_tracked") for k in sd)
        return "ascend" if has_counters else "timm045"
    return None


def remap_v045(sd: Mapping[str, "torch.Tensor"], *, iabn: bool) -> tuple["OrderedDict[str, torch.Tensor]", int]:
    """v0.4.5 names -> current names. With ``iabn`` every norm weight becomes
    ``|w| + 1e-5`` and BN counters are added. Persistent blur filters (``no_aa_jit=True``
    builds) are constants the module computes itself and are dropped. Returns the dict and
    the number of norm layers converted."""
    import torch

    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    norms = 0
    for key, value in sd.items():
        if key.endswith(".filt"):
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = pattern.sub(repl, new)
        if new.endswith(".bn.weight"):
            norms += 1
            if iabn:
                value = value.abs() + IABN_EPS
        out[new] = value
        if iabn and new.endswith(".bn.running_var"):
            out[new[: -len("running_var")] + "num_batches_tracked"] = torch.zeros((), dtype=torch.int64)
    return out, norms


def to_current(sd: Mapping[str, "torch.Tensor"]) -> tuple[str | None, "OrderedDict[str, torch.Tensor]", int]:
    """(layout, state_dict in current timm names, norm layers converted)."""
    layout = detect_layout(sd)
    if layout == "timm":
        return layout, OrderedDict((k, v) for k, v in sd.items() if not k.endswith(".aa.filt")), 0
    if layout in ("timm045", "ascend"):
        out, norms = remap_v045(sd, iabn=layout == "timm045")
        return layout, out, norms
    return None, OrderedDict(sd), 0


# -- what a checkpoint is, for error messages ------------------------------------------------------

def tresnet_size(sd: Mapping[str, "torch.Tensor"]) -> tuple[str | None, int, int, int]:
    """(variant or None, stem width, layer3 depth, classes) of a current-names state_dict."""
    width = int(sd["body.conv1.conv.weight"].shape[0]) if "body.conv1.conv.weight" in sd else -1
    depth = len({k.split(".")[2] for k in sd if k.startswith("body.layer3.")})
    fc = sd.get("head.fc.weight")
    classes = int(fc.shape[0]) if fc is not None else -1
    return SIZES.get((width, depth)), width, depth, classes


def describe_foreign(sd: Mapping[str, Any]) -> str:
    """One phrase saying what a non-TResNet state_dict looks like."""
    keys = [k[len("backbone."):] if k.startswith("backbone.") else k for k in sd]
    joined = "\n".join(keys)
    mm = any(k.startswith("backbone.") for k in sd)
    if "fuse_layers" in joined or re.search(r"^transition\d", joined, re.M):
        if "offset_feature_layers" in joined or "heatmap_module" in joined or "transition_offset" in joined:
            return "this looks like a DEKR (bottom-up pose) checkpoint: use model dekr"
        if "incre_modules" in joined or "increase_layers" in joined or "classifier.weight" in sd:
            return ("this looks like an HRNet-C classification checkpoint"
                    + (" (mmpretrain layout)" if mm else "") + ": use model hrnet_cls")
        if "final_layer" in joined or "head." in joined:
            return ("this looks like an HRNet top-down pose checkpoint"
                    + (" (mmpose layout)" if mm else "") + ": use model hrnet_pose")
        return "this looks like an HRNet checkpoint, not a TResNet one"
    if "layer1.0.conv1.weight" in sd and "fc.weight" in sd:
        return "this looks like a torchvision-style ResNet checkpoint, not a TResNet one"
    first = ", ".join(list(sd)[:3])
    return f"this is not a TResNet checkpoint ({len(sd)} tensors, first keys: {first})"


_LAYOUT_NAMES = {"timm": "timm", "timm045": "timm v0.4.5 (InplaceABN)", "ascend": "Ascend-patched timm v0.4.5"}


def _check_flavour(layout: str, variant: str, size: str | None) -> None:
    """The Ascend checkpoint was trained for the patched network and timm's for timm's: a
    silent swap would load strictly yet score worse, so it is refused with the fix."""
    ascend_variant = variant.endswith("_ascend")
    if layout == "ascend" and not ascend_variant:
        raise WeightsError(
            f"this is an Ascend-patched TResNet-{(size or '?').upper()} checkpoint (plain BN, trained with "
            "LeakyReLU 0.01 and zero-padded blur), not a timm one", "use variant m_ascend")
    if layout != "ascend" and ascend_variant:
        raise WeightsError(
            f"this is a {_LAYOUT_NAMES[layout]} tresnet_{size or '?'} checkpoint, trained for timm's network "
            "(LeakyReLU 1e-3, reflect-padded blur), not Ascend's patched one", f"use variant {size or 'm'}")


def convert(obj: Any, variant: str, expected: Mapping[str, "torch.Tensor"], name: str = "the checkpoint"
            ) -> tuple["OrderedDict[str, torch.Tensor]", str]:
    """Turn a loaded checkpoint object into a state_dict with exactly ``expected``'s keys and
    shapes (in its order), for the ``variant`` the module was built as (``m``, ``l``, ``xl``,
    ``m_ascend``). Returns the state_dict and a one-line description of what was found."""
    sd, notes = unwrap_state_dict(obj, name)
    layout, current, norms = to_current(sd)
    if layout is None:
        raise WeightsError(describe_foreign(sd))
    want = variant[: -len("_ascend")] if variant.endswith("_ascend") else variant
    size, width, depth, classes = tresnet_size(current)
    _check_flavour(layout, variant, size)
    if size is not None and size != want:
        raise WeightsError(f"this is a tresnet_{size} checkpoint ({_LAYOUT_NAMES[layout]} layout), "
                           f"not tresnet_{want}", f"use variant {size}")
    want_classes = int(expected["head.fc.weight"].shape[0])
    if classes not in (-1, want_classes):
        raise WeightsError(f"this tresnet_{size or want} checkpoint has a {classes}-class head "
                           f"({'ImageNet-21k' if classes == 11221 else 'fine-tuned'}); "
                           f"hrdeploy's tresnet variants classify the {want_classes} ImageNet-1k classes")
    if size is None:
        raise WeightsError(f"this is a TResNet checkpoint of an unknown size (stem width {width}, "
                           f"{depth} blocks in layer3), not tresnet_{want}")
    mismatch = KeyMismatch.between(current, expected)
    if not mismatch.ok:
        raise WeightsError(f"incomplete or modified tresnet_{want} checkpoint ({_LAYOUT_NAMES[layout]} "
                           f"layout): {mismatch.describe()}")
    out = OrderedDict((k, current[k].to(ref.dtype)) for k, ref in expected.items())
    text = f"{_LAYOUT_NAMES[layout]} tresnet_{want} checkpoint"
    if layout == "timm045":
        notes.append(f"renamed to timm names, {norms} InplaceABN weights -> |w| + {IABN_EPS:g}")
    elif layout == "ascend":
        notes.append(f"renamed to timm names ({norms} BatchNorms copied as is)")
    return out, text + (": " + ", ".join(notes) if notes else "")


def load_weights(module: "torch.nn.Module", path: Path, variant: str) -> str:
    """Read ``path``, convert it for ``variant`` and load it strictly into ``module``."""
    obj = read_checkpoint(path)
    state, text = convert(obj, variant, module.state_dict(), Path(path).name)
    module.load_state_dict(state, strict=True)
    return text
