"""An unpickler that cannot run code: what :func:`torch.load` uses for checkpoints its own
``weights_only`` mode refuses.

A pickle is a program: unpickling a .pth written by someone else may call any function it
names. torch's ``weights_only`` unpickler allows only tensor rebuilds and plain containers;
:mod:`hrdeploy.checkpoints` uses it first for every torch format. What it refuses (a
checkpoint that also pickles trainer objects, an argparse Namespace, numpy scalars) and the
pre-zip ``.tar`` format it cannot read go through :data:`RESTRICTED_PICKLE`, an allow-list of
the same kind: torch's own list, a few builtins, inert placeholders (:class:`Opaque`) for
classes, and nothing that can call anything else. It serves every unpickling torch does
(``pickle_module.load`` for the legacy format's magic number, sys_info and storage keys,
``pickle_module.Unpickler`` for the object, and its ``persistent_load`` records).

torch is imported only when an allow-list is first needed.
"""
from __future__ import annotations

import _compat_pickle
import builtins
import functools
import pickle
from collections import OrderedDict
from typing import Any


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


#: ``torch.load(path, weights_only=False, pickle_module=RESTRICTED_PICKLE)``
RESTRICTED_PICKLE = _RestrictedPickle()
