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

import _compat_pickle
import builtins
import functools
import pickle
import struct
import tarfile
import zipfile
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


# -- reading ---------------------------------------------------------------------------------
#
# A pickle is a program: unpickling a .pth written by someone else may call any function it
# names. torch's ``weights_only`` unpickler allows only tensor rebuilds and plain containers;
# hrdeploy uses it first for every torch format. What it refuses (a checkpoint that also
# pickles trainer objects, an argparse Namespace, numpy scalars) and the pre-zip ``.tar``
# format it cannot read go through :class:`_RestrictedUnpickler`, an allow-list of the same
# kind: torch's own list, a few builtins, inert placeholders for classes, and nothing that
# can call anything else. It serves every unpickling torch does (``pickle_module.load`` for
# the legacy format's magic number, sys_info and storage keys, ``pickle_module.Unpickler`` for
# the object, its ``persistent_load`` records).

class CheckpointRefused(pickle.UnpicklingError):
    """A pickle asks for something no tensor checkpoint holds; ``what`` says what, e.g. "a
    call to os.system". Raised before anything it names is imported or called."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(what)


class _Sealed(type):
    # a pickle's BUILD could otherwise set attributes on a placeholder class and make the
    # next object it builds call them
    def __setattr__(cls, name: str, value: Any) -> None:
        raise CheckpointRefused(f"an attribute assignment on the class {cls.__name__}")


class Opaque(metaclass=_Sealed):
    """Stands in for a class a checkpoint pickles besides tensors and plain containers
    (mmengine's message hub, timm's argparse Namespace, numpy scalars, optimizer objects, a
    whole model): their contents are irrelevant here, and importing their modules could run
    foreign code. Building one stores nothing and calls nothing."""

    origin = "object"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<placeholder for {self.origin}>"

    # dict and list subclasses (addict, EasyDict) are filled by SETITEMS / APPENDS
    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


_SAFE_BUILTINS = {"set", "frozenset", "slice", "complex", "bytearray", "list", "dict", "tuple",
                  "int", "float", "str", "bool", "bytes", "range"}

# globals that training checkpoints carry and whose names do not look like classes
_INERT = {"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
          "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
          "numpy.dtype", "numpy.ndarray", "collections.defaultdict", "collections.deque",
          "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone"}

# modules a checkpoint has no business naming at all, classes included (subprocess.Popen)
_HOSTILE_MODULES = {
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "builtins", "shutil", "socket",
    "importlib", "runpy", "pty", "code", "codeop", "ctypes", "pickle", "_pickle", "marshal",
    "types", "functools", "operator", "io", "_io", "webbrowser", "multiprocessing", "signal",
    "asyncio", "threading", "_thread", "tempfile", "pdb", "bdb", "timeit", "platform", "inspect",
    "gc", "weakref", "copyreg", "pkgutil", "zipimport", "site", "urllib", "http", "ftplib",
    "smtplib", "telnetlib", "glob", "cProfile", "profile", "trace", "sched", "atexit",
}

# what users know these modules as
_SHOWN_AS = {"posix": "os", "nt": "os", "__builtin__": "builtins"}


def _shown(module: str, name: str) -> str:
    return f"{_SHOWN_AS.get(module, module)}.{name}"


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict[str, Any]:
    """What torch's own ``weights_only`` unpickler accepts (tensor rebuilds, storages,
    dtypes, OrderedDict)."""
    import torch

    try:
        from torch import _weights_only_unpickler as wou
        return dict(wou._get_allowed_globals())
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


@functools.lru_cache(maxsize=None)
def _placeholder(qualified: str) -> type:
    name = qualified.rsplit(".", 1)[-1]
    return _Sealed(name, (Opaque,), {"origin": qualified, "__module__": __name__})


def _reconstructor(cls: Any, base: Any, state: Any) -> Opaque:
    # copyreg._reconstructor (protocols 0 and 1) would call base.__new__ / base.__init__
    if isinstance(cls, type) and issubclass(cls, Opaque):
        return cls()
    raise CheckpointRefused(f"a copyreg reconstruction of {getattr(cls, '__name__', type(cls).__name__)}")


def _looks_like_class(module: str, name: str) -> bool:
    last = name.rsplit(".", 1)[-1].lstrip("_")
    return last[:1].isupper() and module.split(".", 1)[0] not in _HOSTILE_MODULES


def _persistent_id_kind(saved_id: Any) -> Any:
    kind = saved_id[0] if isinstance(saved_id, tuple) and saved_id else None
    return kind.decode("ascii", "replace") if isinstance(kind, bytes) else kind


class _RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """The pure-Python unpickler with an allow-list ``find_class``, no BUILD on classes, and
    a ``persistent_load`` that passes torch only storage records. Slower than the C one,
    but a checkpoint's pickle is small: the tensor data lies outside it."""

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle itself maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        qualified = f"{module}.{name}"
        allowed = _allowed_globals()
        if qualified in allowed:
            return allowed[qualified]
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        if qualified == "copyreg._reconstructor":
            return _reconstructor
        if qualified in _INERT or _looks_like_class(module, name):
            return _placeholder(qualified)
        raise CheckpointRefused(f"a call to {_shown(module, name)}")

    def load_build(self) -> None:
        if isinstance(self.stack[-2], type):
            raise CheckpointRefused(f"an attribute assignment on the class {self.stack[-2].__name__}")
        super().load_build()

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    dispatch[pickle.BUILD[0]] = load_build

    def __setattr__(self, name: str, value: Any) -> None:
        # torch assigns its persistent_load after construction
        if name == "persistent_load":
            value = _guarded_persistent_load(value)
        super().__setattr__(name, value)


def _guarded_persistent_load(torch_load: Any) -> Any:
    def persistent_load(saved_id: Any) -> Any:
        kind = _persistent_id_kind(saved_id)
        if kind == "storage" and len(saved_id) in (5, 6) and isinstance(saved_id[3], (str, bytes)) \
                and isinstance(saved_id[4], int):
            return torch_load(saved_id)
        if kind == "module" and len(saved_id) > 1 and isinstance(saved_id[1], type):
            # the legacy format's record of a pickled nn.Module class: torch compares its
            # source and may write a .patch file; the (placeholder) class is all we need
            return saved_id[1]
        if isinstance(kind, type):  # the same record in the pre-zip .tar format
            return kind
        if isinstance(saved_id, (str, int)) and not isinstance(saved_id, bool):  # a .tar storage key
            return torch_load(saved_id)
        raise CheckpointRefused(f"a persistent record of kind {str(kind)[:40]!r}")
    return persistent_load


class _RestrictedPickle:
    """A ``pickle_module`` for :func:`torch.load`: both its ``load`` and its ``Unpickler``
    are :class:`_RestrictedUnpickler`."""

    Unpickler = _RestrictedUnpickler
    __name__ = "hrdeploy_restricted_pickle"

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _RestrictedUnpickler(file, **kwargs).load()


# -- formats ----------------------------------------------------------------------------------

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

    if kind == "tar":
        _check_tar_members(path)  # weights_only cannot read the pre-zip .tar format
    else:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            pass  # objects besides tensors and plain containers: only the allow-list decides
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle)


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
