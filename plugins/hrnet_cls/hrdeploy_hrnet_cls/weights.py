"""HRNet-C checkpoint layouts: reading, recognising and renaming to the official keys.

Layouts accepted (found automatically):

* official HRNet-Image-Classification == timm ``hrnet_w*`` (identical keys);
* mmpretrain / mmcls ``ImageClassifier``: ``backbone.`` prefix, ``neck.0.*`` / ``head.fc`` head,
  and no bias on the three head downsampling convs and the final 1x1 conv (loaded as zero,
  which is exactly what the mm model computes);
* each as a plain state_dict or wrapped in ``{'state_dict' | 'model': ...}``, with or without
  the ``module.`` prefix of (Distributed)DataParallel; ``.pth``/``.pt``/``.tar`` pickles and
  ``.safetensors`` (timm's hub format), all read by :mod:`hrdeploy.checkpoints`.

A checkpoint that does not fit is described in one line: another width, a pose or DEKR
model, a TResNet, an unreadable file.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from hrdeploy.checkpoints import KeyMismatch, read_state_dict
from hrdeploy.errors import WeightsError

MM_HEAD_BIASES = ("downsamp_modules.0.0.bias", "downsamp_modules.1.0.bias",
                  "downsamp_modules.2.0.bias", "final_layer.0.bias")
_WIDTH_KEY = "stage2.0.branches.0.0.conv1.weight"
_MM_RENAMES = (
    (re.compile(r"^backbone\."), ""),
    (re.compile(r"^neck\.0\.increase_layers\."), "incre_modules."),
    (re.compile(r"^neck\.0\.downsample_layers\.(\d+)\.conv\."), r"downsamp_modules.\1.0."),
    (re.compile(r"^neck\.0\.downsample_layers\.(\d+)\.bn\."), r"downsamp_modules.\1.1."),
    (re.compile(r"^neck\.0\.final_layer\.conv\."), "final_layer.0."),
    (re.compile(r"^neck\.0\.final_layer\.bn\."), "final_layer.1."),
    (re.compile(r"^head\.fc\."), "classifier."),
)


# -- recognising ------------------------------------------------------------------------------

def _indices(keys: list[str], prefix: str) -> set[int]:
    found = set()
    for k in keys:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return found


def hrnet_variant_of(sd: Mapping[str, Tensor]) -> str | None:
    """The HRNet-C variant name of an official-layout backbone, from its shapes."""
    w = sd.get(_WIDTH_KEY)
    if w is None or w.dim() != 4:
        return None
    width = int(w.shape[0])
    keys = list(sd)
    layer1_blocks = len(_indices(keys, "layer1."))
    stage3_modules = len(_indices(keys, "stage3."))
    if width == 16 and layer1_blocks == 1:
        return "w18_small_v1"
    if width == 18 and layer1_blocks == 2:
        return "w18_small_v2"
    if layer1_blocks == 4 and stage3_modules == 4:
        return f"w{width}"
    return f"HRNet with width {width} ({layer1_blocks} stage-1 blocks, {stage3_modules} stage-3 modules)"


def describe_foreign(sd: Mapping[str, Tensor]) -> str | None:
    """One phrase for a checkpoint of another model family, or None if it looks like HRNet-C."""
    keys = list(sd)
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    if has("body.") and has("head.fc."):
        return "this looks like a TResNet checkpoint"
    if has("transition_heatmap.") or has("head_heatmap.") or has("offset_final_layer."):
        return "this looks like a DEKR bottom-up pose model"
    if keys and all(k.split(".")[0] in ("l1", "l2", "l3") for k in keys):
        return "this looks like DEKR's rescoring net"
    for head in ("final_layer.weight", "head.final_layer.weight", "keypoint_head.final_layer.weight"):
        t = sd.get(head)
        if t is not None and t.dim() == 4 and int(t.shape[0]) != 2048:
            return (f"this looks like a pose model (final_layer {int(t.shape[0])} channels, "
                    f"{int(t.shape[1])} in)")
    if has("decode_head.") or has("auxiliary_head."):
        return "this looks like an mmsegmentation model (decode_head)"
    if has("last_layer.") and not has("incre_modules.") and not has("neck."):
        return "this looks like an HRNet segmentation model (last_layer head)"
    if "fc.weight" in sd and has("layer4.") and not has("stage2."):
        return "this looks like a ResNet checkpoint"
    if not has("stage2.") and not has("backbone.stage2."):
        return "this is not an HRNet-C checkpoint (first keys: " + ", ".join(keys[:3]) + ")"
    return None


def to_official(sd: Mapping[str, Tensor]) -> tuple["OrderedDict[str, Tensor]", str]:
    """Rename a recognised layout to the official keys; returns the dict and the layout name."""
    keys = list(sd)
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith(("neck.", "head.fc.")) for k in keys):
        out: "OrderedDict[str, Tensor]" = OrderedDict()
        for k, v in sd.items():
            new = k
            for pattern, repl in _MM_RENAMES:
                new, n = pattern.subn(repl, new)
                if n:
                    break
            out[new] = v
        return out, "mmpretrain"
    if keys and all(k.startswith("backbone.") for k in keys):
        # an OpenMMLab backbone saved on its own: name it by its width below
        return OrderedDict((k[len("backbone."):], v) for k, v in sd.items()), "mm backbone"
    return OrderedDict(sd), "official/timm"


# -- loading ----------------------------------------------------------------------------------

def _fit(sd: "OrderedDict[str, Tensor]", expected: Mapping[str, Tensor], layout: str) -> list[str]:
    """Fill the tensors a layout legitimately lacks (in place); returns notes."""
    notes: list[str] = []
    if layout == "mmpretrain":
        added = 0
        for key in MM_HEAD_BIASES:
            if key not in sd and key in expected:
                sd[key] = torch.zeros(expected[key].shape, dtype=torch.float32)
                added += 1
        if added:
            notes.append(f"{added} head conv biases set to zero")
    missing_nbt = [k for k in expected if k.endswith("num_batches_tracked") and k not in sd]
    for k in missing_nbt:
        sd[k] = torch.zeros((), dtype=torch.int64)
    if missing_nbt:
        notes.append(f"{len(missing_nbt)} num_batches_tracked added")
    return notes


def _mismatch(sd: Mapping[str, Tensor], expected: Mapping[str, Tensor], variant: str) -> str | None:
    found = KeyMismatch.between(sd, expected)
    if found.ok:
        return None
    cls = sd.get("classifier.weight")
    if (cls is not None and not found.missing and not found.unexpected
            and {k for k, _, _ in found.shapes} <= {"classifier.weight", "classifier.bias"}):
        return (f"this HRNet-C {variant} checkpoint has {int(cls.shape[0])} classes "
                f"(expected {int(expected['classifier.weight'].shape[0])})")
    return f"checkpoint does not fit HRNet-C {variant}: " + found.describe()


def convert_checkpoint(sd: Mapping[str, Tensor], expected: Mapping[str, Tensor],
                       variant: str) -> tuple["OrderedDict[str, Tensor]", list[str]]:
    """Map any supported layout onto ``expected`` (the model's state_dict, may live on the
    meta device); raise :class:`WeightsError` saying what the checkpoint is when it does not
    fit. Returns the official-layout dict and notes describing the layout."""
    foreign = describe_foreign(sd)
    if foreign:
        suffix = f", not an HRNet-C {variant} checkpoint" if foreign.startswith("this looks like") else ""
        raise WeightsError(foreign + suffix)
    official, layout = to_official(sd)
    found = hrnet_variant_of(official)
    if found is not None and found != variant:
        hint = f": choose --variant {found}" if not found.startswith("HRNet with") else ""
        raise WeightsError(f"this is a {found} checkpoint (expected {variant}){hint}")
    if not any(k.startswith(("incre_modules.", "classifier.")) for k in official):
        raise WeightsError(f"this is an HRNet {variant} backbone without the classification head")
    notes = [f"{layout} layout"] + _fit(official, expected, layout)
    problem = _mismatch(official, expected, variant)
    if problem:
        raise WeightsError(problem)
    ordered = OrderedDict((k, official[k]) for k in expected)
    return ordered, notes


def load_checkpoint(module: nn.Module, path: str | Path, variant: str) -> str:
    """Load ``path`` strictly into ``module`` (an :class:`HRNetClassifier`); returns a short
    description of the layout found."""
    sd, wrap_notes = read_state_dict(path)
    expected = module.state_dict()
    official, notes = convert_checkpoint(sd, expected, variant)
    non_float = [k for k, v in official.items() if k in expected and not v.is_floating_point()
                 and expected[k].is_floating_point()]
    if non_float:
        raise WeightsError(f"{Path(path).name}: tensor {non_float[0]} is {official[non_float[0]].dtype}, "
                           "expected floating point (a quantised checkpoint?)")
    module.load_state_dict(official, strict=True)
    return ", ".join(notes + wrap_notes)
