"""Artifacts: what ``export`` and ``convert`` write and every other command reads.

Two forms are accepted wherever a MODEL_FILE is expected:

* an exported ``.onnx`` file: its ``metadata_props`` carry the model, variant, task, input
  spec and preprocessing (written by ``hrdeploy export``); it runs on the onnxruntime target
  in fp32;
* an artifact folder written by ``hrdeploy convert``: ``manifest.json`` plus the compiled
  file(s) it names by role.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import atomic_write_json
from .model import InputSpec

MANIFEST = "manifest.json"
FORMAT = "hrdeploy-artifact/1"
META_KEY = "hrdeploy"
REFERENCE = "reference.npz"


@dataclass
class Artifact:
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    # -- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | str) -> "Artifact":
        path = Path(path)
        if not path.exists():
            raise UserError(f"model file not found: {path}",
                            "give an exported .onnx file or an artifact folder from 'hrdeploy convert'")
        if path.is_dir():
            mpath = path / MANIFEST
            if not mpath.is_file():
                raise UserError(f"{path} is not an artifact folder: no {MANIFEST} in it")
            try:
                manifest = json.loads(mpath.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise UserError(f"{mpath} is not valid JSON: {e}") from None
            if manifest.get("format") != FORMAT:
                raise UserError(f"{mpath} is not an hrdeploy manifest (format {manifest.get('format')!r})")
            return cls(path, manifest)
        if path.suffix.lower() != ".onnx":
            raise UserError(f"{path} is neither an .onnx file nor an artifact folder")
        meta = read_onnx_metadata(path)
        if not meta:
            raise UserError(f"{path} carries no hrdeploy metadata",
                            "export it with 'hrdeploy export', or convert it with --model/--variant")
        manifest = {"format": FORMAT, **meta, "target": "onnxruntime", "precision": "fp32",
                    "files": {"model": path.name}}
        for role, name in meta.get("extra_files", {}).items():
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

    def file(self, role: str, required: bool = True) -> Path | None:
        name = self.manifest.get("files", {}).get(role)
        if name is None:
            if required:
                raise UserError(f"artifact {self.path} has no {role!r} file in its manifest")
            return None
        p = self.folder / name
        if required and not p.exists():
            raise UserError(f"artifact file missing: {p}", "the artifact folder is incomplete; convert again")
        return p

    def files(self) -> dict[str, Path]:
        return {role: self.folder / name for role, name in self.manifest.get("files", {}).items()}

    def save(self) -> None:
        if not self.is_folder:
            raise RuntimeError("only artifact folders have a manifest file")
        atomic_write_json(self.path / MANIFEST, self.manifest)

    def describe(self) -> str:
        return (f"{self.model}/{self.variant} on {self.target} ({self.precision})")


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
                return json.loads(prop.value)
            except json.JSONDecodeError:
                raise UserError(f"{path}: hrdeploy metadata is not valid JSON") from None
    return {}


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
