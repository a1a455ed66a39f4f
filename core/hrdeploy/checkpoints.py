"""Reading checkpoint files and comparing them with a model: the part every model plugin shares.

Each plugin knows its own layouts (renamings, which model or width a file looks like); what
is the same for all of them lives here, so that every model reads files the same safe way
and words the same problems the same way:

* :func:`read_checkpoint` - ``torch.load`` on the CPU (or a ``.safetensors`` file) that never
  imports or runs the classes a training framework pickles next to the weights, with a
  one-line :class:`~hrdeploy.errors.WeightsError` for missing, corrupt or truncated files;
* :func:`unwrap_state_dict` - the tensor dict inside ``{'state_dict' | 'model' | ...}``
  wrappers, without DataParallel's ``module.`` prefix, and notes on what was peeled off;
* :class:`KeyMismatch` - the keys and shapes of a state_dict against the model's, summarised
  on one line ("2 missing keys (e.g. ...); 1 unexpected keys (e.g. ...)").

torch is imported inside the functions: importing this module stays cheap.
"""
from __future__ import annotations

import builtins
import json
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from hrdeploy.errors import WeightsError

if TYPE_CHECKING:
    import torch

# in the order they are tried: timm saves both 'state_dict' and 'state_dict_ema'
WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_state_dict", "net")
DP_PREFIX = "module."


# -- reading ----------------------------------------------------------------------------------

class Opaque:
    """Stands in for any class a checkpoint pickles besides tensors and plain containers
    (mmengine's message hub, timm's argparse Namespace, optimizer objects, a whole model):
    their contents are irrelevant here, and importing their modules could run foreign code."""

    origin = "object"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "Opaque":
        return Opaque()


_SAFE_BUILTINS = {"set", "frozenset", "slice", "complex", "bytearray", "list", "dict", "tuple",
                  "int", "float", "str", "bool", "bytes", "range"}


def _allowed_globals() -> dict[str, Any]:
    """What torch's own ``weights_only`` unpickler accepts (tensor rebuilds, storages,
    dtypes, OrderedDict), plus the user's registered safe globals."""
    import torch

    try:
        from torch import _weights_only_unpickler as wou
        allowed = dict(wou._get_allowed_globals())
        allowed.update(wou._get_user_allowed_globals())
        return allowed
    except (ImportError, AttributeError):  # a torch without these internals: the minimum
        from torch import _utils
        allowed = {"collections.OrderedDict": OrderedDict,
                   "torch._utils._rebuild_tensor_v2": _utils._rebuild_tensor_v2,
                   "torch._utils._rebuild_parameter": _utils._rebuild_parameter}
        for name in dir(torch):
            obj = getattr(torch, name)
            if isinstance(obj, torch.dtype) or name.endswith("Storage"):
                allowed[f"torch.{name}"] = obj
        return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only what ``weights_only`` would; anything else becomes an :class:`Opaque`
    subclass named after it, so a checkpoint with trainer objects still yields its tensors."""

    _allowed: dict[str, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified in self._allowed:
            return self._allowed[qualified]
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        return type(name, (Opaque,), {"origin": qualified})


class _RestrictedPickle:
    """A ``pickle_module`` for :func:`torch.load` built on :class:`_RestrictedUnpickler`."""

    Unpickler = _RestrictedUnpickler
    load = staticmethod(pickle.load)
    __name__ = "hrdeploy_restricted_pickle"


def _read_safetensors(path: Path) -> "OrderedDict[str, torch.Tensor]":
    # an 8-byte little-endian header length, a JSON header, then raw bytes: reading it here
    # avoids a dependency for the one format timm's hub uses
    import torch

    dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
              "U8": torch.uint8, "BOOL": torch.bool}
    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError("file too short")
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = memoryview(data)[8 + n:]
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = dtypes[info["dtype"]]
        shape = [int(s) for s in info["shape"]]
        if end == start:
            out[key] = torch.zeros(shape, dtype=dtype)
            continue
        out[key] = torch.frombuffer(bytearray(body[start:end]), dtype=dtype).reshape(shape)
    return out


def _torch_load(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refuses checkpoints that pickle other objects next to the weights
        # (mmengine's meta/message_hub, timm's args): read those without importing them
        _RestrictedUnpickler._allowed = _allowed_globals()
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle)


def _first_sentence(exc: BaseException, limit: int = 100) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split(". ", 1)[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def read_checkpoint(path: str | Path, hint: str | None = None) -> object:
    """The unpickled content of a checkpoint file (``.pth``/``.pt``/``.tar`` or
    ``.safetensors``), on the CPU. Raises :class:`WeightsError` when the file is missing
    (with ``hint``, e.g. which file to give) or is not a readable checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}", hint)
    try:
        if path.suffix == ".safetensors":
            return _read_safetensors(path)
        return _torch_load(path)
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
