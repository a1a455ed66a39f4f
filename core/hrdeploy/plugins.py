"""Plugin discovery: stevedore finds and imports entry points one by one, pluggy checks
each module against the hook specs. A plugin that fails either step is recorded with its
error and skipped; nothing it does can stop the others from loading."""
from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import UserError

GROUPS = {"model": "hrdeploy.models", "target": "hrdeploy.targets"}
BUILTIN_TARGETS = ("onnxruntime",)


@dataclass
class PluginRecord:
    """One entry point and what became of it."""

    name: str
    kind: str  # "model" or "target"
    module: str
    distribution: str | None
    version: str | None
    status: str = "ok"  # ok | error | disabled
    error: str | None = None
    provides: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "module": self.module,
                "distribution": self.distribution, "version": self.version,
                "status": self.status, "error": self.error, "provides": self.provides}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


class Registry:
    """Loads every installed plugin once and answers for models and targets."""

    def __init__(self, load: bool = True) -> None:
        self.pm = pluggy.PluginManager("hrdeploy")
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.models: dict[str, Any] = {}
        self.targets: dict[str, Any] = {}
        self._owner: dict[str, PluginRecord] = {}
        if load:
            self.load()

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> None:
        """Discover every entry point, decide which are disabled *before* importing anything
        (a disabled plugin's module is never imported: it may be slow, broken or hostile),
        then load the rest through stevedore and register them, installed distributions first
        so that they win a name claimed twice."""
        from stevedore import NamedExtensionManager

        disabled = {n.strip() for n in os.environ.get("HRDEPLOY_DISABLE_PLUGINS", "").split(",") if n.strip()}
        builtin_only = os.environ.get("HRDEPLOY_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0")
        for kind, group in GROUPS.items():
            pending: list[tuple[PluginRecord, md.EntryPoint]] = []
            for ep in self._entry_points(group):
                rec = PluginRecord(name=ep.name, kind=kind, module=ep.value,
                                   distribution=_dist_name(ep), version=_dist_version(ep))
                self.records.append(rec)
                if ep.name in disabled:
                    rec.status, rec.error = "disabled", "HRDEPLOY_DISABLE_PLUGINS names it"
                elif builtin_only and not (kind == "target" and ep.name in BUILTIN_TARGETS):
                    rec.status = "disabled"
                    rec.error = "HRDEPLOY_DISABLE_PLUGIN_AUTOLOAD is set (only the built-in target loads)"
                else:
                    pending.append((rec, ep))
            failures: dict[tuple[str, str], BaseException] = {}

            def on_failure(_mgr: Any, ep: md.EntryPoint, exc: BaseException,
                           failures: dict[tuple[str, str], BaseException] = failures) -> None:
                failures[(ep.name, ep.value)] = exc

            # NamedExtensionManager checks the name before importing the entry point's module
            mgr = NamedExtensionManager(namespace=group, names=sorted({ep.name for _, ep in pending}),
                                        invoke_on_load=False, on_load_failure_callback=on_failure)
            loaded = {(ext.entry_point.name, ext.entry_point.value): ext for ext in mgr.extensions}
            for rec, ep in sorted(pending, key=lambda item: not _installed(item[1])):
                key = (ep.name, ep.value)
                if key in failures:
                    rec.status, rec.error = "error", _one_line(failures[key])
                    continue
                ext = loaded.get(key)
                if ext is None:  # stevedore dropped it for a reason of its own
                    rec.status, rec.error = "error", "entry point could not be loaded"
                    continue
                self._register(rec, ext.plugin, kind)

    @staticmethod
    def _entry_points(group: str) -> list[md.EntryPoint]:
        seen: set[tuple[str, str]] = set()
        out = []
        for ep in md.entry_points(group=group):
            key = (ep.name, ep.value)
            if key not in seen:  # the same distribution visible twice on sys.path
                seen.add(key)
                out.append(ep)
        return out

    def _register(self, rec: PluginRecord, module: Any, kind: str) -> None:
        pname = f"{kind}:{rec.name}"
        try:
            self.pm.register(module, name=pname)
        except ValueError:
            # the same module serves as both a model and a target plugin: already registered
            pass
        except pluggy.PluginValidationError as e:
            rec.status, rec.error = "error", _one_line(e)
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            self.pm.unregister(module)
            rec.status, rec.error = "error", _one_line(e)
            return
        hook = "hrdeploy_models" if kind == "model" else "hrdeploy_targets"
        impl = getattr(module, hook, None)
        if impl is None:
            rec.status, rec.error = "error", f"entry point in group {GROUPS[kind]!r} implements no {hook}()"
            return
        try:
            objs = list(impl() or [])
        except Exception as e:  # a plugin's own bug must not take the others down
            rec.status, rec.error = "error", f"{hook}() raised {_one_line(e)}"
            return
        table = self.models if kind == "model" else self.targets
        for obj in objs:
            name = getattr(obj, "name", "")
            if not name:
                rec.status, rec.error = "error", f"{hook}() returned an object without a name: {obj!r}"
                continue
            if name in table:
                other = self._owner[f"{kind}:{name}"]
                rec.status = "error"
                rec.error = (f"{kind} name {name!r} is claimed twice: by {_source(other)} (used) and by "
                             f"{_source(rec)} (skipped); uninstall one of them")
                continue
            table[name] = obj
            self._owner[f"{kind}:{name}"] = rec
            rec.provides.append(name)

    # -- lookups ------------------------------------------------------------------------------
    def model(self, name: str) -> Any:
        return self._lookup("model", name, self.models, "none; pip install a model plugin")

    def target(self, name: str) -> Any:
        return self._lookup("target", name, self.targets, "none")

    def _lookup(self, kind: str, name: str, table: dict[str, Any], none_hint: str) -> Any:
        if name in table:
            return table[name]
        broken = [r for r in self.records if r.kind == kind and r.name == name and r.status == "error"]
        if broken:
            raise UserError(f"{kind} plugin {name!r} failed to load: {broken[0].error}", "run 'hrdeploy doctor'")
        raise UserError(f"unknown {kind} {name!r}", "installed: " + (", ".join(sorted(table)) or none_hint))

    def owner(self, kind: str, name: str) -> PluginRecord | None:
        return self._owner.get(f"{kind}:{name}")

    def call(self, hook: str, **kwargs: Any) -> None:
        """Call a notification hook; a failing implementation is reported, not fatal."""
        caller: Callable[..., Any] = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as e:
                import sys

                print(f"warning: plugin {impl.plugin_name} failed in {hook}: {_one_line(e)}", file=sys.stderr)


def _installed(ep: md.EntryPoint) -> bool:
    """Installed by an installer (pip writes RECORD), not a metadata folder dropped on a path."""
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.read_text("RECORD") is not None


def _source(rec: PluginRecord) -> str:
    if rec.distribution:
        return f"{rec.distribution} {rec.version or ''} ({rec.module})".replace("  ", " ")
    return f"module {rec.module} (no installed distribution)"


def _dist_name(ep: md.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _dist_version(ep: md.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else None


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry() -> None:
    global _REGISTRY
    _REGISTRY = None


def orphan_modules() -> list[str]:
    """Top-level ``hrdeploy_*`` modules that import but belong to no installed entry point:
    the "copied into site-packages / on PYTHONPATH but never pip-installed" case, which would
    otherwise silently not show up."""
    import pkgutil

    claimed = set()
    for group in GROUPS.values():
        for ep in md.entry_points(group=group):
            claimed.add(ep.value.split(":")[0].split(".")[0])
    found = []
    for mod in pkgutil.iter_modules():
        if mod.name.startswith("hrdeploy_") and mod.name not in claimed:
            found.append(mod.name)
    return sorted(set(found))


def installed_distributions() -> list[tuple[str, str | None, list[str]]]:
    """``(distribution, version, ["model:name", ...])`` for every distribution providing an
    hrdeploy entry point, read from package metadata without importing any plugin."""
    by_dist: dict[str, tuple[str | None, list[str]]] = {}
    for kind, group in GROUPS.items():
        for ep in Registry._entry_points(group):
            dist = _dist_name(ep) or f"(unregistered module {ep.value})"
            version, provides = by_dist.setdefault(dist, (_dist_version(ep), []))
            provides.append(f"{kind}:{ep.name}")
    return [(d, v, p) for d, (v, p) in sorted(by_dist.items())]
