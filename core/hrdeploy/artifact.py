"""Artifacts: what ``export`` and ``convert`` write and every other command reads.

Two forms are accepted wherever a MODEL_FILE is expected:

* an exported ``.onnx`` file: its ``metadata_props`` carry the model, variant, task, input
  spec and preprocessing (written by ``hrdeploy export``); it runs on the onnxruntime target
  in fp32;
* an artifact folder written by ``hrdeploy convert``: ``manifest.json`` plus the compiled
  file(s) it names by role.

An artifact is untrusted input (it is copied between machines and downloaded), so everything
read from it is checked here, in one place, before any command uses it: the manifest's or the
metadata's fields and their types (:func:`check_fields`), every path it names (relative and
inside the artifact: :func:`inside`), the files' sha256 recorded at conversion
(:meth:`Artifact.check_integrity`) and the reference outputs that travel with it
(:func:`load_reference`, which also checks they were stored for this model). A violation is a
:class:`~hrdeploy.errors.UserError`: one line naming the file, exit 2.

What the hashes protect, and what they do not:

* an artifact folder: ``convert`` records the sha256 of every file in it (``manifest.json``
  and ``verify.json`` aside) under ``"sha256"``; predict, eval, bench and verify refuse a file
  that changed since (an edited or swapped model, reference, config). The reference records
  the model, variant, task, target, precision, preprocessing, input and outputs it was stored
  for, so a manifest edited in any of them is refused too.
  A recorded file that is gone is refused only when the manifest needs it by role. Manifests
  from before hashes were recorded open as before. The hashes detect accidents and mix-ups;
  they are no signature: whoever can rewrite the manifest can rewrite them.
* a ``--dry-run`` plan folder: hashed the same way when the plan is written, checked by
  ``convert --from-plan`` before anything runs (the folder travels to another machine), and
  hashed again after the compile with the files it added.
* an exported ``.onnx``: a file cannot hold its own hash, so its ``.ref.npz`` records the
  sha256 of the ``.onnx`` it was computed with; opening the pair refuses an edited ``.onnx`` or
  another export's reference. The metadata must also name the graph's own input and shape.
  Extra files named by the metadata (a rescoring net) are not hashed, only contained.

Hashing reads every file once per open, in 1 MiB chunks: 0.13-0.24 s for an HRNet-W18
artifact (86 MB, warm page cache) on the shared 2-core development box, against about 4 s
for a whole ``verify`` of it.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import UserError
from .io import atomic_write_bytes, atomic_write_json
from .model import InputSpec
from .target import sha256_file

MANIFEST = "manifest.json"
FORMAT = "hrdeploy-artifact/1"
META_KEY = "hrdeploy"
REFERENCE = "reference.npz"
VERIFY_REPORT = "verify.json"
#: manifest key: relative path -> sha256 of every file of the folder at conversion
HASHES = "sha256"
#: written into the folder after conversion, so never part of the recorded hashes
UNHASHED = frozenset({MANIFEST, VERIFY_REPORT})
#: npz entry of a reference file: JSON naming what it was stored for (model, variant, input...)
REFERENCE_META = "hrdeploy"

_RECONVERT = "re-convert the model, or fetch the artifact again from where it was made"
_INCOMPLETE = "the artifact folder is incomplete; convert again"
#: what a reference records of the artifact it was stored for (besides input and outputs):
#: a manifest edited in any of them (another variant, a looser precision, other normalisation)
#: no longer matches its reference
_REFERENCE_FIELDS = ("model", "variant", "task", "target", "precision", "preprocess")
_REF_HINT = "re-run 'hrdeploy export' / 'hrdeploy convert' to store it again"

_NULL = type(None)
# field -> (JSON types allowed, required); null only where hrdeploy itself writes it
_MANIFEST_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "model": ((str,), True), "variant": ((str,), True), "files": ((dict,), True),
    "task": ((str,), False), "target": ((str,), False), "precision": ((str,), False),
    "input": ((dict,), False), "outputs": ((list,), False), "preprocess": ((dict, _NULL), False),
    "tolerances": ((dict,), False), "batch_sizes": ((list, _NULL), False), "sizes": ((list, _NULL), False),
    "target_options": ((dict,), False), "conversion": ((dict,), False), HASHES: ((dict,), False),
    "dry_run": ((bool,), False),
}
_METADATA_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "model": ((str,), True), "variant": ((str,), True), "task": ((str,), False),
    "input": ((dict,), False), "outputs": ((list,), False), "preprocess": ((dict, _NULL), False),
    "tolerances": ((dict,), False), "extra_files": ((dict,), False),
}
_INPUT_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), False), "channels": ((int,), False), "height": ((int, _NULL), False),
    "width": ((int, _NULL), False), "gears": ((list,), False), "stride": ((int,), False),
    "batch": ((int, str), False),
}
_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


# -- validation -------------------------------------------------------------------------------
def _json_type(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def check_fields(doc: Any, where: str, fields: Mapping[str, tuple[tuple[type, ...], bool]],
                 kind: str = "an hrdeploy manifest", prefix: str = "") -> dict[str, Any]:
    """``doc`` if it is a JSON object whose known fields (and those of its ``input``) have the
    types hrdeploy reads them as; else a UserError naming ``where`` (the file), the first wrong
    field and that it is not a valid ``kind``."""
    def refuse(problem: str) -> UserError:
        return UserError(f"{where} is not {kind}: {problem}", _RECONVERT)

    if not isinstance(doc, dict):
        raise refuse(f"it holds {_json_type(doc)}, not an object")
    for key, (types, required) in fields.items():
        if key not in doc:
            if required:
                raise refuse(f"it has no {prefix + key!r}")
            continue
        value = doc[key]
        wrong_type = not isinstance(value, types)
        if wrong_type or (required and isinstance(value, str) and not value.strip()):
            want = " or ".join(_JSON_NAMES[t] for t in types if t is not _NULL)
            raise refuse(f"{prefix + key!r} must be {want}, not {_json_type(value) if wrong_type else 'empty'}")
    for key in ("files", "extra_files", HASHES):
        for name, value in (doc.get(key) or {}).items():
            if not isinstance(value, str):
                raise refuse(f"{key}.{name} must be a file name, not {_json_type(value)}")
    if not prefix and isinstance(doc.get("input"), dict):
        check_fields(doc["input"], where, _INPUT_FIELDS, kind, prefix="input.")
    return doc


def inside(root: Path, rel: Any, where: str, label: str) -> Path:
    """``root / rel`` for a path taken from an artifact (``label`` says which field,
    ``where`` which file), refused unless it stays inside ``root``: not absolute, no ``..``,
    no symbolic link leading out. An artifact must never make hrdeploy read (or copy into a
    shipped artifact) a file of the machine it is opened on."""
    why = None
    if not isinstance(rel, str) or not rel.strip():
        why = "which is not a file name"
    elif PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        why = "an absolute path"
    elif ".." in PurePosixPath(rel.replace("\\", "/")).parts:
        why = "a path that climbs out of the artifact with '..'"
    else:
        path = Path(root) / rel
        if not path.resolve().is_relative_to(Path(root).resolve()):
            why = "a symbolic link that leads out of the artifact"
    if why is not None:
        raise UserError(f"{where} names {label} {rel!r}, {why}: an artifact may only name files inside "
                        f"its own folder; refusing to read it", _RECONVERT)
    return Path(root) / rel


# -- reference outputs ------------------------------------------------------------------------
def reference_meta(doc: Mapping[str, Any], onnx_sha256: str | None = None) -> dict[str, Any]:
    """What a reference file is stored for, from a manifest or export metadata; an exported
    ``.ref.npz`` also records the sha256 of the ``.onnx`` it was computed with (the ONNX file
    cannot carry a hash of itself, so the hash goes the other way)."""
    meta = {k: doc.get(k) for k in _REFERENCE_FIELDS + ("input", "outputs")}
    if onnx_sha256:
        meta["onnx_sha256"] = onnx_sha256
    return meta


def save_reference(path: Path, x: np.ndarray, outputs: Sequence[np.ndarray], names: Sequence[str],
                   meta: Mapping[str, Any] | None = None) -> None:
    """Reference inputs and outputs as ``.npz`` (``input``, ``output:NAME``, and the JSON
    ``meta`` under :data:`REFERENCE_META`), written atomically."""
    buf = io.BytesIO()
    extra = {REFERENCE_META: np.array(json.dumps(dict(meta)))} if meta else {}
    np.savez_compressed(buf, input=x, **{f"output:{n}": o for n, o in zip(names, outputs)}, **extra)
    atomic_write_bytes(Path(path), buf.getvalue())


def _open_npz(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
    except OSError as e:
        raise UserError(f"cannot read reference file {path}: {e.strerror}", _REF_HINT) from None
    if not is_zip:  # np.load would try other formats (a pickle, a bare .npy) and say so
        raise UserError(f"reference file {path} is damaged or not an .npz archive (it is not a zip file)", _REF_HINT)
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"reference file {path} is damaged or not an .npz archive ({_short(e)})", _REF_HINT) from None
    return z


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"


def load_reference(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(inputs, {output name: outputs}) of a reference file, refused with one line naming the
    file when it is truncated, lacks its arrays or holds something else."""
    path = Path(path)
    with _open_npz(path) as z:
        try:
            if "input" not in z.files:
                raise UserError(f"reference file {path} has no 'input' array (it holds {sorted(z.files)[:5]})",
                                _REF_HINT)
            x = z["input"]
            outs = {k.split(":", 1)[1]: z[k] for k in z.files if k.startswith("output:")}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
            raise UserError(f"reference file {path} is damaged ({_short(e)})", _REF_HINT) from None
    if not outs:
        raise UserError(f"reference file {path} has no output arrays ('output:NAME')", _REF_HINT)
    bad = [n for n, a in [("input", x), *outs.items()]
           if not np.issubdtype(a.dtype, np.floating if n == "input" else np.number)]
    if bad or x.ndim != 4 or len(x) == 0:
        if bad:
            what = f"{bad[0]!r} holds {'no float tensors' if bad[0] == 'input' else 'no numbers'}"
        else:
            what = f"'input' has shape {list(x.shape)}, not N x C x H x W"
        raise UserError(f"reference file {path} is not a reference: {what}", _REF_HINT)
    return x, outs


def read_reference_meta(path: Path) -> dict[str, Any] | None:
    """The JSON meta of a reference file (None for files stored before it was recorded);
    reads that entry only, not the arrays."""
    with _open_npz(path) as z:
        if REFERENCE_META not in z.files:
            return None
        try:
            meta = json.loads(str(z[REFERENCE_META][()]))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise UserError(f"reference file {path} is damaged ({_short(e)})", _REF_HINT) from None
    if not isinstance(meta, dict):
        raise UserError(f"reference file {path} is damaged: its {REFERENCE_META!r} entry is not an object", _REF_HINT)
    return meta


_INPUT_KEYS = ("name", "channels", "height", "width")


def _disagreement(meta: Mapping[str, Any], doc: Mapping[str, Any]) -> str | None:
    """The first field where a reference's meta and a manifest disagree, as 'X in the
    reference, Y in the manifest'. A field the reference does not record is not compared (an
    exported .ref.npz has no target); of the input, only what the reference arrays depend on."""
    pairs: list[tuple[str, Any, Any]] = []
    for key in _REFERENCE_FIELDS:
        if meta.get(key) is None:
            continue
        if key == "preprocess" and isinstance(meta[key], dict) and isinstance(doc.get(key), dict):
            pairs += [(f"preprocess {k}", meta[key].get(k), doc[key].get(k))
                      for k in sorted(set(meta[key]) | set(doc[key]))]
        else:
            pairs.append((key, meta[key], doc.get(key)))
    ref_in, doc_in = meta.get("input") or {}, doc.get("input") or {}
    pairs += [(f"input {k}", ref_in[k], doc_in[k]) for k in _INPUT_KEYS if k in ref_in and k in doc_in]
    if meta.get("outputs") and doc.get("outputs"):
        pairs.append(("outputs", list(meta["outputs"]), list(doc["outputs"])))
    for label, ref, mine in pairs:
        if ref != mine:
            return f"{label} {ref!r} in the reference, {mine!r} in the manifest"
    return None


# -- the artifact -----------------------------------------------------------------------------
@dataclass
class Artifact:
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    # -- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | str) -> "Artifact":
        """Open a MODEL_FILE: check the manifest (or ONNX metadata) and that every path it
        names stays inside the artifact. File contents are checked by :meth:`check_integrity`."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"model file not found: {path}",
                            "give an exported .onnx file or an artifact folder from 'hrdeploy convert'")
        if path.is_dir():
            return cls._load_folder(path)
        if path.suffix.lower() != ".onnx":
            raise UserError(f"{path} is neither an .onnx file nor an artifact folder")
        return cls._load_onnx(path)

    @classmethod
    def _load_folder(cls, path: Path) -> "Artifact":
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise UserError(f"{path} is not an artifact folder: no {MANIFEST} in it")
        inside(path, MANIFEST, str(path), "its manifest")
        try:
            doc = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{mpath} is not valid JSON: {e}") from None
        if isinstance(doc, dict) and doc.get("format") != FORMAT:
            raise UserError(f"{mpath} is not an hrdeploy manifest (format {doc.get('format')!r})", _RECONVERT)
        art = cls(path, check_fields(doc, str(mpath), _MANIFEST_FIELDS))
        for role, name in doc["files"].items():
            art.inside(name, f"files.{role}")
        for name in (doc.get(HASHES) or {}):
            art.inside(name, f"a {HASHES} entry")
        return art

    @classmethod
    def _load_onnx(cls, path: Path) -> "Artifact":
        meta = read_onnx_metadata(path)
        if not meta:
            raise UserError(f"{path} carries no hrdeploy metadata",
                            "export it with 'hrdeploy export', or convert it with --model/--variant")
        where = f"the hrdeploy metadata of {path}"
        check_fields(meta, where, _METADATA_FIELDS, kind="valid")
        manifest = {"format": FORMAT, **meta, "target": "onnxruntime", "precision": "fp32",
                    "files": {"model": path.name}}
        for role, name in (meta.get("extra_files") or {}).items():
            inside(path.parent, name, where, f"extra_files.{role}")
            manifest["files"][role] = name
        ref = reference_path_for_onnx(path)
        if ref.is_file():
            manifest["files"]["reference"] = ref.name
        return cls(path, manifest)

    # -- accessors ------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def variant(self) -> str:
        return self.manifest["variant"]

    @property
    def task(self) -> str:
        return self.manifest.get("task", "")

    @property
    def target(self) -> str:
        return self.manifest.get("target", "onnxruntime")

    @property
    def precision(self) -> str:
        return self.manifest.get("precision", "fp32")

    @property
    def input(self) -> InputSpec:
        return InputSpec.from_dict(self.manifest.get("input", {}))

    @property
    def batch_sizes(self) -> list[int] | None:
        return self.manifest.get("batch_sizes")

    @property
    def sizes(self) -> list[tuple[int, int]] | None:
        s = self.manifest.get("sizes")
        return [tuple(x) for x in s] if s else None  # type: ignore[misc]

    @property
    def where(self) -> str:
        """The file an artifact's fields come from, for messages."""
        return str(self.path / MANIFEST) if self.is_folder else f"the hrdeploy metadata of {self.path}"

    def inside(self, rel: Any, label: str) -> Path:
        """A path named by this artifact (a manifest field, a target's conversion record),
        resolved inside its folder or refused: see :func:`inside`."""
        return inside(self.folder, rel, self.where, label)

    def file(self, role: str, required: bool = True) -> Path | None:
        name = (self.manifest.get("files") or {}).get(role)
        if name is None:
            if required:
                raise UserError(f"artifact {self.path} has no {role!r} file in its manifest")
            return None
        p = self.inside(name, f"files.{role}")
        if required and not p.exists():
            raise UserError(f"artifact file missing: {p}", _INCOMPLETE)
        return p

    def files(self) -> dict[str, Path]:
        return {role: self.inside(name, f"files.{role}") for role, name in (self.manifest.get("files") or {}).items()}

    def save(self) -> None:
        if not self.is_folder:
            raise RuntimeError("only artifact folders have a manifest file")
        atomic_write_json(self.path / MANIFEST, self.manifest)

    def describe(self) -> str:
        return (f"{self.model}/{self.variant} on {self.target} ({self.precision})")

    # -- integrity --------------------------------------------------------------------------
    def check_integrity(self) -> None:
        """Refuse an artifact whose files changed after conversion: every file whose sha256
        the manifest records must still have it (a recorded file that is gone is refused only
        when the manifest needs it by role); the reference must have been stored for the model,
        variant and input the manifest names. An exported ``.onnx`` is checked against the
        sha256 its ``.ref.npz`` records. Manifests written before hashes were recorded (and
        bare ``.onnx`` files without a reference) carry nothing to check against."""
        if self.is_folder:
            needed = set((self.manifest.get("files") or {}).values())
            for rel, digest in (self.manifest.get(HASHES) or {}).items():
                p = self.inside(rel, f"a {HASHES} entry")
                if not p.is_file():
                    if rel in needed:
                        raise UserError(f"artifact file missing: {p}", _INCOMPLETE)
                    continue
                if sha256_file(p) != digest:
                    raise UserError(f"artifact file {rel} does not match the sha256 in {self.path / MANIFEST}: "
                                    "it was changed after conversion; re-convert")
        ref = self.file("reference", required=False)
        if ref is None or not ref.is_file():
            return
        meta = read_reference_meta(ref)
        if meta is None:
            return
        if not self.is_folder and meta.get("onnx_sha256") and meta["onnx_sha256"] != sha256_file(self.path):
            raise UserError(f"reference file {ref} was stored for another ONNX file than {self.path} "
                            "(sha256 differs): the model was changed after export or the reference swapped",
                            "re-export to store a matching reference")
        differs = _disagreement(meta, self.manifest)
        if differs:
            raise UserError(f"reference file {ref} does not belong to {self.where}: {differs}",
                            "one of them was changed after conversion; re-convert")

    def check_reference(self, x: np.ndarray, outputs: Mapping[str, np.ndarray]) -> None:
        """Refuse reference arrays that cannot have been stored for this artifact's input and
        outputs (a swapped or hand-made reference file), before anything runs them."""
        ref = self.file("reference")
        spec = self.input
        if x.shape[1] != spec.channels or (spec.fixed_size and tuple(x.shape[2:]) != spec.fixed_size):
            want = f"{spec.channels} x {spec.height} x {spec.width}" if spec.fixed_size else f"{spec.channels} channels"
            raise UserError(f"reference file {ref} holds inputs of shape {list(x.shape[1:])}, but {self.where} "
                            f"says the input is {want}", "re-convert to store a matching reference")
        names = self.manifest.get("outputs") or []
        missing = [n for n in names if n not in outputs]
        if missing:
            raise UserError(f"reference file {ref} has no output {missing[0]!r}, which {self.where} names",
                            "re-convert to store a matching reference")


def hash_files(folder: Path) -> dict[str, str]:
    """sha256 of every file in an artifact folder (relative POSIX path -> hex digest), read in
    chunks, except the manifest and the reports later commands write into the folder; a
    symbolic link leading out of the folder is not part of the artifact and is left out."""
    root = Path(folder).resolve()
    digests: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            if rel in UNHASHED or not p.is_file() or not p.resolve().is_relative_to(root):
                continue
            digests[rel] = sha256_file(p)
    return digests


def reference_path_for_onnx(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".ref.npz")


def read_onnx_metadata(path: Path) -> dict[str, Any]:
    """Read the hrdeploy entry of an ONNX file's metadata_props without loading weights."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise UserError(f"cannot read ONNX file {path}: {type(e).__name__}: {str(e)[:150]}") from None
    for prop in model.metadata_props:
        if prop.key == META_KEY:
            try:
                meta = json.loads(prop.value)
            except json.JSONDecodeError:
                raise UserError(f"{path}: hrdeploy metadata is not valid JSON") from None
            _check_graph_input(model, meta, path)
            return meta
    return {}


def _check_graph_input(model: Any, meta: Any, path: Path) -> None:
    """The metadata must name the graph's own input: a file whose metadata was edited (or
    copied from another export) would otherwise be fed under the wrong name or shape."""
    spec = meta.get("input") if isinstance(meta, dict) else None
    if not isinstance(spec, dict) or not spec.get("name"):
        return
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    names = [i.name for i in graph_inputs]
    if names and spec["name"] not in names:
        raise UserError(f"the hrdeploy metadata of {path} names input {spec['name']!r}, but the graph's input is "
                        f"{names[0]!r}: the metadata was changed after export", "re-export the model")
    graph = next((i for i in graph_inputs if i.name == spec["name"]), None)
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in graph.type.tensor_type.shape.dim] if graph is not None else []
    want = [spec.get("channels"), spec.get("height"), spec.get("width")]
    if len(dims) == 4 and any(d is not None and w is not None and d != w for d, w in zip(dims[1:], want)):
        raise UserError(f"the hrdeploy metadata of {path} says the input is {want}, but the graph takes "
                        f"{dims[1:]}: the metadata was changed after export", "re-export the model")


def write_onnx_metadata(model: Any, meta: dict[str, Any]) -> None:
    """Set the hrdeploy entry (and readable copies of the main fields) on an onnx ModelProto."""
    keep = [p for p in model.metadata_props
            if p.key not in (META_KEY, "model", "variant", "task", "preprocess")]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.append(p)
    entries = {META_KEY: json.dumps(meta), "model": meta["model"], "variant": meta["variant"],
               "task": meta["task"], "preprocess": json.dumps(meta.get("preprocess", {}))}
    for k, v in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = k, v
