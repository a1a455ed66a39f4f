"""File input/output that never leaves a half-written file behind."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    if path.is_dir():  # os.replace would name the temporary file in its error
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(path: Path | None, option: str) -> None:
    """Refuse, before any work is done, an output file that cannot be written: a folder stands
    there, or a file stands where its folder should be (the work would be lost at the end)."""
    if path is None or str(path) == "-":
        return
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder, but a file is needed here", "name a file, not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{option} {path}: {parent} is a file, not a folder", "choose another location")
            break


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, default=_default)


def atomic_write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write_bytes(path, (dumps(obj, indent) + "\n").encode("utf-8"))


def read_json(path: Path, what: str = "JSON file") -> Any:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is not valid JSON: {e}") from None


def read_image(path: Path) -> np.ndarray:
    """Decode an image as the official pipelines do (BGR uint8, EXIF orientation ignored)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise UserError(f"cannot decode image {path}: the file is corrupt or not an image")
    return image


def write_image(path: Path, image: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(Path(path).suffix or ".jpg", image)
    if not ok:
        raise UserError(f"cannot encode image for {path}")
    atomic_write_bytes(Path(path), buf.tobytes())


def list_images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def collect_images(paths: list[Path]) -> list[Path]:
    """The images named on a command line: files as given, folders expanded (subfolders
    included). Nothing to run on is refused rather than answered with an empty result."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = list_images(p)
            if not inside:
                raise UserError(f"no images in {p}", "looked for " + ", ".join(IMAGE_SUFFIXES) + " files, subfolders included")
            found.extend(inside)
        elif p.is_file():
            found.append(p)
        else:
            raise UserError(f"image not found: {p}")
    if not found:
        raise UserError("no images given", "name image files or folders")
    return found
