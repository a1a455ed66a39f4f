"""May hrdeploy write or replace this path? One answer for every command that writes.

The rules (nothing of the user's is deleted or overwritten):

* an output never is, contains or lies inside one of the command's inputs (``convert d/m.onnx
  -o d``, ``predict imgs --vis imgs``, ``export --ref-images refs -o refs/m.onnx``);
* an existing output file is replaced only with ``--force`` (``export -o existing.onnx``), and
  a folder is never taken for a file;
* an existing output folder is written into only when it is empty, or replaced with
  ``--force`` only when hrdeploy wrote it (it holds an hrdeploy ``manifest.json``) or it is
  empty: a folder of the user's (a thesis, the current folder) is never emptied;
* a command that fails removes only the folder it created itself (:func:`discard_created`).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .artifact import FORMAT, HASHES, MANIFEST, UNHASHED
from .errors import UserError
from .io import check_output_file


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def overlap(output: Path, inputs: Iterable[Path | None]) -> tuple[str, Path] | None:
    """How ``output`` meets the inputs, the closest relation first: ("is" | "contains" |
    "lies inside", that input), or None. Paths are compared after resolving symlinks (and by inode, for a
    hard link or another spelling of the same file)."""
    out = _real(output)
    given = [Path(p) for p in inputs if p is not None]
    real = [_real(p) for p in given]
    for p, inp in zip(given, real):  # the closest relation is the one worth naming
        if out == inp or (out.exists() and inp.exists() and os.path.samefile(out, inp)):
            return "is", p
    for p, inp in zip(given, real):
        if out in inp.parents:
            return "contains", p
    for p, inp in zip(given, real):
        if inp in out.parents:
            return "lies inside", p
    return None


def refuse_overlap(output: Path, inputs: Iterable[Path | None], option: str = "-o") -> None:
    """Refuse an output that is, contains or lies inside one of ``inputs``."""
    hit = overlap(output, inputs)
    if hit is not None:
        how, inp = hit
        raise UserError(f"{option} {output} {how} the input {inp}: hrdeploy does not write over its inputs",
                        f"choose another {option}")


def option_paths(options: dict[str, Any] | None) -> list[Path]:
    """The existing files and folders named by option values (``--boxes``, ``--rescore``...):
    inputs too, which no output may overwrite."""
    return [Path(v) for v in (options or {}).values() if isinstance(v, str) and v and Path(v).exists()]


def check_export_output(output: Path, *, weights: Path | None, ref_images: Path | None,
                        options: dict[str, Any] | None, force: bool) -> None:
    """Before an export's minutes of tracing and checking: ``output`` is an .onnx file that
    overwrites no input and no existing file (nor its ``.ref.npz``) without ``force``."""
    from .artifact import reference_path_for_onnx

    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise UserError(f"-o must name an .onnx file, got {output}")
    check_replace_file(output, [weights, ref_images, *option_paths(options)], force=force, option="-o",
                       also=[reference_path_for_onnx(output)])


def check_replace_file(path: Path, inputs: Iterable[Path | None], *, force: bool, option: str = "-o",
                       also: Iterable[Path] = ()) -> None:
    """Before writing the file ``path`` (and the files in ``also`` written beside it, such as
    an export's ``.ref.npz``): refused if it overlaps an input, cannot be a file
    (:func:`hrdeploy.io.check_output_file`), or exists without ``force``."""
    path = Path(path)
    refuse_overlap(path, inputs, option)
    check_output_file(path, option)
    if force:
        return
    existing = [p for p in (path, *also) if Path(p).exists()]
    if existing:
        raise UserError(f"{existing[0]} exists: hrdeploy does not overwrite a file without --force",
                        f"choose another {option} or pass --force")


@dataclass(frozen=True)
class FolderPlan:
    """What :func:`prepare_output_folder` found and did: whether the folder existed before
    (a failure must then leave it where it is), and the parents it had to create."""

    path: Path
    existed: bool
    #: parent folders created for ``path``, innermost first
    new_parents: tuple[Path, ...] = ()


def _hrdeploy_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest.json hrdeploy wrote into ``folder`` (an artifact or a dry-run plan), or None."""
    manifest = Path(folder) / MANIFEST
    if manifest.is_symlink() or not manifest.is_file():
        return None
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def is_hrdeploy_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a manifest.json that hrdeploy wrote: the only kind of non-empty
    folder ``--force`` may replace."""
    return _hrdeploy_manifest(folder) is not None


def foreign_files(folder: Path) -> list[str]:
    """Files in an hrdeploy folder that hrdeploy did not write there: not recorded in its
    manifest's sha256 list, not the manifest or a report written later, not a tool log (a
    failed ``--from-plan`` leaves new ones). Empty for a manifest without the list (older
    versions) or a folder that is not hrdeploy's."""
    doc = _hrdeploy_manifest(folder)
    recorded = doc.get(HASHES) if doc else None
    if not isinstance(recorded, dict):
        return []
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            rel = (Path(root) / name).relative_to(folder).as_posix()
            if rel not in recorded and rel not in UNHASHED and not name.endswith(".log"):
                found.append(rel)
    return sorted(found)


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_output_folder(folder: Path, inputs: Iterable[Path | None], *, force: bool,
                        option: str = "-o") -> None:
    """Refuse to write into ``folder`` unless it is new, empty, or (with ``force``) one that
    hrdeploy wrote; refuse it outright if it overlaps an input or is a file. Changes nothing."""
    folder = Path(folder)
    refuse_overlap(folder, inputs, option)
    if folder.is_symlink() and force:
        raise UserError(f"{option} {folder} is a symbolic link: --force does not replace what it points to",
                        f"give {option} the folder itself")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserError(f"{folder} is a file, but a folder is needed here", f"choose another {option}")
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    if not force:
        raise UserError(f"output folder {folder} exists and is not empty", f"choose another {option} or pass --force")
    where = f"{folder} ({folder.resolve()})" if folder.name in ("", "..") else str(folder)  # "-o ." says which
    if not is_hrdeploy_folder(folder):
        raise UserError(f"--force replaces only a folder hrdeploy wrote (one with its {MANIFEST}) or an empty one; "
                        f"{option} {where} holds {_some(entries)}", f"choose another {option}")
    foreign = foreign_files(folder)
    if foreign:
        raise UserError(f"--force replaces only what hrdeploy wrote; the artifact {option} {where} also holds "
                        f"{_some(foreign)}, which it did not write", f"move them out first, or choose another {option}")


def prepare_output_folder(folder: Path, inputs: Iterable[Path | None], *, force: bool,
                          option: str = "-o") -> FolderPlan:
    """:func:`check_output_folder`, then make ``folder`` an empty folder to write into: an
    artifact of hrdeploy's is removed first (``force``). Returns what existed, for
    :func:`discard_created`."""
    folder = Path(folder)
    check_output_folder(folder, inputs, force=force, option=option)
    existed = folder.exists()
    replaced = existed and any(folder.iterdir())
    new_parents = []
    for parent in folder.absolute().parents:
        if parent.exists():
            break
        new_parents.append(parent)
    if replaced:  # only an hrdeploy folder gets here (checked above)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # a folder whose previous contents hrdeploy replaced is hrdeploy's to remove on failure
    return FolderPlan(folder, existed=existed and not replaced, new_parents=tuple(new_parents))


def discard_created(plan: FolderPlan, keep_suffixes: tuple[str, ...] = (".log",)) -> None:
    """After a failure: remove what the command wrote into ``plan.path`` except the files a
    user needs to read (tool logs, in sub-folders too: the error names them), and the folder
    itself when it is then empty and the command created it. A folder that existed before is
    left in place."""
    folder = plan.path
    if not folder.is_dir():
        return
    for root, dirs, files in os.walk(folder, topdown=False):
        here = Path(root)
        for name in files:
            if not name.endswith(keep_suffixes):
                (here / name).unlink()
        for name in dirs:
            sub = here / name
            if sub.is_symlink():
                sub.unlink()
            elif not any(sub.iterdir()):
                sub.rmdir()
    if plan.existed or any(folder.iterdir()):
        return
    folder.rmdir()
    for parent in plan.new_parents:
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def check_vis_folder(folder: Path, inputs: Iterable[Path], option: str = "--vis") -> None:
    """``predict --vis``: drawings never go into (or replace) the images they are drawn from,
    and the folder is a folder."""
    refuse_overlap(folder, inputs, option)
    if Path(folder).exists() and not Path(folder).is_dir():
        raise UserError(f"{folder} is a file, but a folder is needed here", f"give {option} a folder")
