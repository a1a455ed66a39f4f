"""Reading checkpoint files and comparing them with a model: the part every model plugin shares.

Each plugin knows its own layouts (renamings, which model or width a file looks like); what
is the same for all of them lives here, so that every model reads files the same safe way
and words the same problems the same way:

* :func:`read_checkpoint` - ``torch.load`` on the CPU (or a ``.safetensors`` file) that never
  imports or runs anything a file names: ``weights_only`` first, an allow-list unpickler for
  what it refuses, and a one-line :class:`~hrdeploy.errors.WeightsError` for missing,
  corrupt, truncated or hostile files ("it contains a call to os.system");
* :func:`unwrap_state_dict` - the tensor dict inside ``{'state_dict' | 'model' | ...}``
  wrappers, without DataParallel's ``module.`` prefix, and notes on what was peeled off;
* :func:`refuse_non_finite` - NaN or infinite weights refused, naming the tensors;
* :class:`KeyMismatch` - the keys and shapes of a state_dict against the model's, summarised
  on one line ("2 missing keys (e.g. ...); 1 unexpected keys (e.g. ...)").

torch is imported inside the functions: importing this module stays cheap.
"""
from __future__ import annotations

import pickle
import struct
import tarfile
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from hrdeploy.errors import WeightsError
from hrdeploy.safe_unpickle import RESTRICTED_PICKLE, CheckpointRefused, Opaque

__all__ = ["KeyMismatch", "Opaque", "read_checkpoint", "read_state_dict", "refuse_non_finite", "unwrap_state_dict"]

if TYPE_CHECKING:
    import torch

# in the order they are tried: timm saves both 'state_dict' and 'state_dict_ema'
WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_state_dict", "net")
DP_PREFIX = "module."


# -- reading ---------------------------------------------------------------------------------

def _sniff(path: Path) -> str:
    """"safetensors", "torchscript", "zip" (torch >= 1.6), "tar" (torch < 0.4) or "pickle"
    (torch's legacy format, or any other pickle)."""
    if path.suffix == ".safetensors":
        return "safetensors"
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < path.stat().st_size:
        return "safetensors"  # an 8-byte header length, then the JSON header
    if head.startswith(b"PK\x03\x04"):  # the test torch.load makes, not a search for a zip's end
        with zipfile.ZipFile(path) as z:
            torchscript = any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in z.namelist())
        return "torchscript" if torchscript else "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    return "pickle"


def _check_tar_members(path: Path) -> None:
    # torch extracts these members into a temporary folder and opens them: a link or a
    # device there would read a host file or block
    with tarfile.open(path) as tar:
        for name in ("storages", "tensors", "pickle"):
            member = tar.getmember(name)
            if not member.isreg():
                raise CheckpointRefused(f"a {name!r} member that is not a regular file")


def _read_safetensors(path: Path) -> "dict[str, torch.Tensor]":
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise WeightsError(f"{path.name} is a .safetensors file, and reading it needs the safetensors package",
                           "pip install 'hrdeploy[safetensors]'") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SafetensorError, or an OSError of the read
        raise WeightsError(f"cannot read {path.name}: not a safetensors file or corrupt "
                           f"({_first_sentence(exc)})") from None


def _torch_load(path: Path, kind: str) -> Any:
    import torch

    with warnings.catch_warnings():
        # a file pickled with protocol 4 reads fine; the note about it is noise for users
        warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
        if kind == "tar":
            _check_tar_members(path)  # weights_only cannot read the pre-zip .tar format
        else:
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                pass  # objects besides tensors and plain containers: only the allow-list decides
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=RESTRICTED_PICKLE)


def _first_sentence(exc: BaseException, limit: int = 100) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split(". ", 1)[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def read_checkpoint(path: str | Path, hint: str | None = None) -> object:
    """The unpickled content of a checkpoint file (``.pth``/``.pt``/``.tar``, any torch
    format, or ``.safetensors``), on the CPU, read without running anything it names.
    Raises :class:`WeightsError` when the file is missing (with ``hint``, e.g. which file to
    give), asks for code to run, or is not a readable checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}", hint)
    try:
        kind = _sniff(path)
        if kind == "safetensors":
            return _read_safetensors(path)
        if kind == "torchscript":
            raise WeightsError(f"{path.name} is a TorchScript archive (a compiled model), not a tensor checkpoint",
                               "give the model's state_dict, saved with torch.save(model.state_dict(), PATH)")
        return _torch_load(path, kind)
    except WeightsError:
        raise
    except CheckpointRefused as exc:
        raise WeightsError(f"{path.name} is not a tensor checkpoint: it contains {exc.what} "
                           "(refused; nothing in it was run)") from None
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
        raise WeightsError(
            f"cannot read {path.name}: not a PyTorch checkpoint or corrupt ({_first_sentence(exc)})") from None


def unwrap_state_dict(obj: object, name: str = "the checkpoint"
                      ) -> tuple["OrderedDict[str, torch.Tensor]", list[str]]:
    """The tensors inside a loaded checkpoint: wrappers (:data:`WRAPPER_KEYS`) peeled, a
    pickled ``nn.Module`` replaced by its state_dict, DataParallel's ``module.`` prefix
    stripped; non-tensor entries dropped. Returns them with notes on what was peeled off.
    ``name`` (the file name) starts the :class:`WeightsError` raised when there are none."""
    import torch

    notes: list[str] = []
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
        notes.append("pickled nn.Module")
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), (Mapping, Opaque))), None)
        if inner is None:
            break
        obj = obj[inner]
        notes.append(f"'{inner}' wrapper")
    if isinstance(obj, Opaque):
        raise WeightsError(f"{name} holds a pickled {obj.origin}, not a state_dict "
                           "(save model.state_dict() instead of the whole model)")
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{name} holds a {type(obj).__name__}, not a state_dict")
    tensors = OrderedDict((str(k), v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if not tensors:
        keys = ", ".join(list(map(str, obj))[:4])
        raise WeightsError(f"{name} holds no tensors (top-level keys: {keys or 'none'})")
    if all(k.startswith(DP_PREFIX) for k in tensors):
        tensors = OrderedDict((k[len(DP_PREFIX):], v) for k, v in tensors.items())
        notes.append(f"'{DP_PREFIX}' prefix stripped")
    return tensors, notes


def refuse_non_finite(tensors: Mapping[str, "torch.Tensor"], name: str, shown: int = 3) -> None:
    """Raise :class:`WeightsError` naming the tensors (the first ``shown`` and their count)
    that hold NaN or infinite values. Called on the weights as loaded into the model, after
    the plugin's own diagnoses (wrong model, wrong width) had their say: a diverged training
    run saves NaN weights, and the export would otherwise only report an unexplained ONNX
    Runtime mismatch ("max rel nan")."""
    import torch

    bad = [k for k, v in tensors.items()
           if (v.is_floating_point() or v.is_complex()) and v.device.type != "meta"
           and not bool(torch.isfinite(v).all())]
    if bad:
        more = ", ..." if len(bad) > shown else ""
        raise WeightsError(f"{name} holds NaN or infinite values in {len(bad)} "
                           f"tensor{'s' if len(bad) > 1 else ''} ({', '.join(bad[:shown])}{more}): "
                           "the weights are broken", "use a checkpoint saved before training diverged")


def read_state_dict(path: str | Path, hint: str | None = None
                    ) -> tuple["OrderedDict[str, torch.Tensor]", list[str]]:
    """:func:`read_checkpoint` then :func:`unwrap_state_dict`, errors naming the file."""
    return unwrap_state_dict(read_checkpoint(path, hint), Path(path).name)


# -- comparing with the model -----------------------------------------------------------------

def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in (value.shape if hasattr(value, "shape") else value))


@dataclass
class KeyMismatch:
    """How a state_dict's keys and shapes differ from the model's (key order kept)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    # (key, checkpoint shape, model shape)
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @classmethod
    def between(cls, state_dict: Mapping[str, Any],
                expected: Mapping[str, "torch.Tensor | Sequence[int]"]) -> "KeyMismatch":
        """Compare ``state_dict`` with ``expected`` (tensors, possibly on the meta device, or
        shapes)."""
        return cls(
            missing=[k for k in expected if k not in state_dict],
            unexpected=[k for k in state_dict if k not in expected],
            shapes=[(k, _shape(state_dict[k]), _shape(v)) for k, v in expected.items()
                    if k in state_dict and _shape(state_dict[k]) != _shape(v)],
        )

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes)

    def describe(self) -> str:
        """One line: counts with the first example of each kind, '' when everything fits."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing keys (e.g. {self.missing[0]})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys (e.g. {self.unexpected[0]})")
        if self.shapes:
            key, got, want = self.shapes[0]
            parts.append(f"{len(self.shapes)} shape mismatches (e.g. {key}: {list(got)} vs {list(want)})")
        return "; ".join(parts)
