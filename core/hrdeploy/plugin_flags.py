"""Command-line flags generated from what the installed plugins declare.

Every :class:`hrdeploy.model.OptionSpec` of an installed model and every
:class:`hrdeploy.target.TargetOption` of an installed target becomes a typed ``--flag`` of the
commands that use it, with its help, default and choices, grouped per plugin in ``--help``:
``--chip`` exists because the sophon target declares ``chip``, ``--boxes`` because a pose
model declares ``boxes``. The core names no plugin; a plugin installed tomorrow gets its flags
the same way. ``--opt KEY=VALUE`` and ``--set KEY=VALUE`` stay for scripts.

Rules for names claimed more than once (each is also listed by :func:`clashes`):

* several models (or several targets) declaring one key share one flag; its value goes to
  the plugin the command uses, which checks and parses it;
* a key that a model and a target both declare gives the model ``--KEY`` and the target
  ``--target-KEY``;
* a key that hides one of hrdeploy's own flags (``--device``, ``--batch``...) gets no flag:
  it stays reachable as ``--set KEY=VALUE`` / ``--opt KEY=VALUE``.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import typer

MODEL, TARGET = "model", "target"


@dataclass
class DeclaredFlag:
    """One generated flag and the plugins that declared it."""

    key: str                     # the option's key as the plugin receives it
    kind: str                    # MODEL or TARGET
    flag: str                    # "--chip", "--target-threads"
    type: type = str
    owners: list[str] = field(default_factory=list)
    helps: list[str] = field(default_factory=list)
    defaults: list[Any] = field(default_factory=list)
    choices: list[tuple[str, ...]] = field(default_factory=list)
    min: float | None = None

    @property
    def param(self) -> str:
        """The Python parameter name of the generated option (never a core parameter's)."""
        return f"_{self.kind}_{self.key}"

    def help_text(self) -> str:
        described = list(zip(self.owners, self.helps, self.defaults, self.choices))
        if len({(t, repr(d), c) for _, t, d, c in described}) == 1:  # the same words from each owner
            described = described[:1]
        parts = []
        for owner, text, default, choices in described:
            extra = []
            if choices:
                extra.append("one of " + ", ".join(map(str, choices)))
            if default not in (None, "", [], ()):
                extra.append(f"default {default}")
            tail = f" ({'; '.join(extra)})" if extra else ""
            parts.append((f"{owner}: " if len(described) > 1 else "") + text + tail)
        return "; ".join(parts)

    def panel(self) -> str:
        return " / ".join(self.owners) + f" {self.kind} options"

    def typer_parameter(self) -> inspect.Parameter:
        if self.type is bool:
            flag = f"{self.flag}/--no-{self.flag[2:]}"
            annotation: Any = Optional[bool]
        else:
            flag = self.flag
            annotation = Optional[self.type if self.type in (int, float) else str]
        extra = {"min": self.min} if self.min is not None and self.type in (int, float) else {}
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                 default=typer.Option(None, flag, help=self.help_text(),
                                                      rich_help_panel=self.panel(), show_default=False, **extra))


def _declarations(registry: Any, kind: str) -> list[tuple[str, str, Any]]:
    """(plugin name, key, declaration) for every option of every loaded plugin of ``kind``."""
    table = registry.models if kind == MODEL else registry.targets
    out = []
    for name in sorted(table):
        for key, decl in (getattr(table[name], "options", None) or {}).items():
            out.append((name, key, decl))
    return out


def declared_flags(registry: Any, reserved: set[str]) -> tuple[list[DeclaredFlag], list[tuple[str, str]]]:
    """The flags of every installed plugin's options, and ``(kind, line)`` per clash of names.
    ``reserved`` holds the flags (``--device``) hrdeploy's own commands already have."""
    flags: dict[tuple[str, str], DeclaredFlag] = {}
    notes: list[tuple[str, str]] = []
    model_keys = {key for _, key, _ in _declarations(registry, MODEL)}
    for kind in (MODEL, TARGET):
        for owner, key, decl in _declarations(registry, kind):
            name = key.replace("_", "-")
            flag = f"--target-{name}" if kind == TARGET and key in model_keys else f"--{name}"
            if flag in reserved or (decl_type(decl) is bool and f"--no-{name}" in reserved):
                notes.append((kind, f"{kind} {owner!r} option {key!r} would hide hrdeploy's own {flag}: "
                                    f"give it as {'--set' if kind == TARGET else '--opt'} {key}=VALUE"))
                continue
            f = flags.setdefault((kind, key), DeclaredFlag(key, kind, flag, decl_type(decl)))
            if f.owners and f.type is not decl_type(decl):
                f.type = str  # the owners disagree: pass the text on, each parses its own
            if getattr(decl, "min", None) is not None:
                f.min = decl.min if f.min is None else min(f.min, decl.min)
            f.owners.append(owner)
            f.helps.append(getattr(decl, "help", "") or "")
            f.defaults.append(getattr(decl, "default", None))
            f.choices.append(tuple(getattr(decl, "choices", ()) or ()))
    for f in flags.values():
        if len(f.owners) > 1:
            notes.append((f.kind, f"{f.flag} is declared by {', '.join(f.owners)}: the value goes to the {f.kind} in use"))
        if f.flag.startswith("--target-"):
            notes.append((f.kind, f"target option {f.key!r} is also a model option: the target's is {f.flag}"))
    return list(flags.values()), notes


def decl_type(decl: Any) -> type:
    t = getattr(decl, "type", str)
    return t if t in (bool, int, float) else str


def with_flags(func: Callable[..., Any], flags: list[DeclaredFlag], kinds: tuple[str, ...]) -> Callable[..., Any]:
    """``func`` with the generated flags of ``kinds`` added to its signature for typer; the
    values given are passed to ``func`` as ``declared={"model": {...}, "target": {...}}``
    (flags left out are absent, so a plugin's own default applies)."""
    chosen = [f for f in flags if f.kind in kinds]
    hints = typing.get_type_hints(func)
    base = [p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(func).parameters.values() if p.name != "declared"]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        declared: dict[str, dict[str, Any]] = {MODEL: {}, TARGET: {}}
        for f in chosen:
            value = kwargs.pop(f.param, None)
            if value is not None:
                declared[f.kind][f.key] = value
        return func(**kwargs, declared=declared)

    wrapper.__signature__ = inspect.Signature(base + [f.typer_parameter() for f in chosen])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {}  # typer reads the signature's (resolved) annotations
    del wrapper.__wrapped__  # inspect.signature must not look past the new signature
    return wrapper
