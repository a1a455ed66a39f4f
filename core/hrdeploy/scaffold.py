"""``hrdeploy plugin new model|target NAME``: a package skeleton for a new plugin — pyproject
with the entry point, the plugin module, a spec or a target, and contract tests — whose own
tests pass right after ``pip install -e '.[test]'``. The templates live in ``templates/``."""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from . import __version__
from .errors import UserError

KINDS = ("model", "target")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def names(kind: str, name: str) -> dict[str, str]:
    """Distribution, module and class names for a plugin, in the repository's conventions."""
    if kind not in KINDS:
        raise UserError(f"unknown plugin kind {kind!r}", "choose model or target")
    if not _NAME.match(name):
        raise UserError(f"plugin name {name!r} is not a lower-case identifier",
                        "use lower-case letters, digits and _, starting with a letter, e.g. resnet or mychip")
    slug = name.replace("_", "-")
    return {
        "name": name,
        "dist": f"hrdeploy-{kind}-{slug}",
        "module": f"hrdeploy_{name}" if kind == "model" else f"hrdeploy_target_{name}",
        "cls": "".join(part.capitalize() for part in name.split("_")),
        "hrdeploy_version": __version__,
    }


def new_plugin(kind: str, name: str, dest: Path | None = None) -> tuple[Path, list[Path]]:
    """Write the skeleton into ``dest`` (default ``./<distribution>``), which must not exist
    or be empty. Returns the folder and the files written."""
    values = names(kind, name)
    dest = Path(dest) if dest is not None else Path(values["dist"])
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"{dest} already exists and is not an empty folder", "choose another -o")
    root = resources.files("hrdeploy") / "templates" / kind
    written: list[Path] = []
    for src, rel in _walk(root):
        target = dest / rel.replace("__module__", values["module"]).removesuffix(".tmpl")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(src.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
        written.append(target)
    return dest, written


def _walk(node, prefix: str = ""):  # importlib.resources Traversable: no rglob
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        rel = f"{prefix}{child.name}"
        if child.is_dir():
            if child.name != "__pycache__":
                yield from _walk(child, rel + "/")
        elif child.name.endswith(".tmpl"):
            yield child, rel
