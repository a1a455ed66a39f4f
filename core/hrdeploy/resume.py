"""Exact resume of an interrupted ``hrdeploy eval``.

Predictions are appended to ``<result>.partial.jsonl`` as they come: a header line naming the
run, then one ``{"id": SAMPLE_KEY, "prediction": ..., "input_sizes": [[H, W], ...]}`` line per
sample (the sizes: a resumed run reports eval's images per input size as an uninterrupted one).
``--resume`` continues only the very evaluation that was interrupted, so the header records
everything that decides a prediction or the score (:class:`RunIdentity`):

* the artifact's contents: the sha256 of each of its files (an artifact folder's recorded
  hashes, checked when it was opened; an exported ``.onnx`` and its companions are hashed);
* the dataset's identity: every sample key (a path relative to the dataset root, a COCO image
  id) in order, with the size of its image, and the sha256 of the label, annotation and box
  files (:meth:`hrdeploy.model.Dataset.defining_files`);
* every option that changes a prediction: model, variant, target, precision, the model
  options, the preprocessing actually used, the target options (but ``threads``, ``device``
  and ``replicas``, which pick where and how fast, not what), the compiled input sizes and
  ``--limit``.

The batch size is part of the run only when the runner has compiled batch sizes (static
targets compile one graph per batch size, whose kernels may round differently). A runner that
takes any batch computes each row on its own (inference-mode networks have no cross-sample
operation; onnxruntime's outputs were measured bitwise equal at batch 1, 2, 3 and 4 against 8),
so an interrupted ``--batch 8`` run may resume at ``--batch 1``.

A difference is refused with what changed; ``--restart`` discards the file and starts again.
The line being written when the run was killed (no newline at the end of the file) is dropped
once, the file rewritten cleanly (atomically) before anything is appended. Every other line is
validated before use — keys, types, a sample of this dataset recorded once, a prediction the
metric can take — and a bad one is refused with its line number.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Sequence

from .artifact import HASHES, hash_files
from .stream import choose_batch
from .errors import UserError
from .io import atomic_write_bytes, dumps
from .model import Dataset, Metric, SampleRef, short_json
from .target import sha256_file

if TYPE_CHECKING:
    from .session import Session

FORMAT = "hrdeploy-eval-partial/2"
#: target options that choose a device or a speed, never a prediction
_PLACEMENT_OPTIONS = frozenset({"threads", "device", "replicas"})
_DAMAGED = "the file was edited or damaged: pass --restart to discard it and start again"
_RESTART = "resume with what the interrupted run used, or pass --restart to discard it and start again"


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.jsonl")


def _canonical(obj: Any) -> Any:
    """Plain JSON types (tuples as lists, numpy scalars as numbers): what the header stores."""
    return json.loads(dumps(obj, indent=None))


@dataclass
class RunIdentity:
    """What a partial file belongs to (see the module docstring)."""

    artifact: dict[str, Any]
    dataset: dict[str, Any]
    options: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "dataset": self.dataset, "options": self.options}

    @property
    def key(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def artifact_identity(session: "Session") -> dict[str, Any]:
    art = session.artifact
    if art.is_folder:
        # the recorded hashes were checked against the files when the session opened it
        files = dict(art.manifest.get(HASHES) or {}) or hash_files(art.path)
    else:
        files = {p.name: sha256_file(p) for p in art.files().values() if p.is_file()}
    return {"files": files, "roles": dict(art.manifest.get("files") or {})}


def dataset_identity(dataset: Dataset, refs: Sequence[SampleRef]) -> dict[str, Any]:
    seen: set[str] = set()
    samples = []
    for ref in refs:
        if ref.id in seen:  # a plugin's dataset bug: its stored predictions would overwrite each other
            raise RuntimeError(f"dataset {dataset.kind} yields the sample id {ref.id!r} twice")
        seen.add(ref.id)
        samples.append([ref.id, ref.path.stat().st_size if ref.path.is_file() else None])
    files = {role: {"name": Path(p).name, "sha256": sha256_file(Path(p))}
             for role, p in dataset.defining_files().items()}
    return {"kind": dataset.kind, "samples": samples, "files": files}


def run_options(session: "Session", options: dict[str, Any], params: dict[str, Any], batch: int,
                limit: int | None) -> dict[str, Any]:
    runner = session.runner
    return _canonical({
        "model": session.spec.name, "variant": session.variant.name, "target": session.target.name,
        "precision": session.artifact.precision, "model options": options, "preprocess": params,
        "target options": {k: v for k, v in session.options.items() if k not in _PLACEMENT_OPTIONS},
        "input sizes": runner.sizes or session.artifact.sizes, "limit": limit,
        "batch": choose_batch(batch, runner.batch_sizes) if runner.batch_sizes else None,
    })


# -- what changed -----------------------------------------------------------------------------------

def _short_hash(digest: Any) -> str:
    return str(digest)[:12] if digest else "none"


def _artifact_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old_files, new_files = old.get("files") or {}, new.get("files") or {}
    role_of = {name: role for role, name in (new.get("roles") or {}).items()}
    out = []
    for name in sorted(set(old_files) | set(new_files)):
        a, b = old_files.get(name), new_files.get(name)
        if a == b:
            continue
        what = f"the {role_of[name]} file {name}" if name in role_of else f"the artifact file {name}"
        if a is None:
            out.append(f"{what} was added to the artifact")
        elif b is None:
            out.append(f"{what} is gone from the artifact")
        else:
            out.append(f"{what} changed since the interrupted run (sha256 {_short_hash(a)} -> {_short_hash(b)})")
    if not out and old.get("roles") != new.get("roles"):
        out.append("the artifact's manifest names other files")
    return out


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _dataset_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    if old.get("kind") != new.get("kind"):
        return [f"the dataset kind changed ({old.get('kind')} -> {new.get('kind')})"]
    old_s = {k: size for k, size in old.get("samples") or []}
    new_s = {k: size for k, size in new.get("samples") or []}
    added = [k for k in new_s if k not in old_s]
    removed = [k for k in old_s if k not in new_s]
    resized = [k for k in new_s if k in old_s and new_s[k] != old_s[k]]
    parts = []
    for keys, what in ((added, "added"), (removed, "removed"), (resized, "changed (other file size)")):
        if keys:
            parts.append(f"{_count(len(keys), 'image')} {what} ({', '.join(keys[:2])}{', ...' if len(keys) > 2 else ''})")
    if not parts and list(old_s) != list(new_s):
        parts.append("the images are in another order")
    old_f, new_f = old.get("files") or {}, new.get("files") or {}
    for role in sorted(set(old_f) | set(new_f)):
        a, b = old_f.get(role) or {}, new_f.get(role) or {}
        if a.get("sha256") != b.get("sha256"):
            name = b.get("name") or a.get("name")
            parts.append(f"the {role} {name} changed (sha256 {_short_hash(a.get('sha256'))} -> "
                         f"{_short_hash(b.get('sha256'))})")
    if parts:
        out.append("the dataset changed: " + ", ".join(parts))
    return out


#: how an option group of :func:`run_options` names one of its entries in a message
_ENTRY = {"model options": "model option", "target options": "target option", "preprocess": "preprocessing"}


def _option_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for group in sorted(set(old) | set(new)):
        a, b = old.get(group), new.get(group)
        if a == b:
            continue
        if group == "batch":
            out.append(f"--batch changed: the interrupted run used batch {a} of this artifact's compiled sizes, "
                       f"this one {b}")
        elif isinstance(a, dict) and isinstance(b, dict):
            out += [f"{_ENTRY.get(group, group)} {k} changed ({short_json(a.get(k))} -> {short_json(b.get(k))})"
                    for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(f"{'--limit' if group == 'limit' else group} changed ({short_json(a)} -> {short_json(b)})")
    return out


def describe_changes(old: dict[str, Any], new: RunIdentity) -> str:
    changes = (_artifact_changes(old.get("artifact") or {}, new.artifact)
               + _dataset_changes(old.get("dataset") or {}, new.dataset)
               + _option_changes(old.get("options") or {}, new.options))
    return "; ".join(changes) or "its recorded run differs from this one"


# -- the partial file -------------------------------------------------------------------------------

@dataclass
class _Lines:
    """A partial file split into lines (1-based numbers); ``torn`` if it does not end in a newline."""

    lines: list[tuple[int, bytes]]
    torn: bool

    @classmethod
    def read(cls, path: Path) -> "_Lines":
        data = path.read_bytes()
        parts = data.split(b"\n")
        torn = bool(parts[-1])  # everything written ends in a newline; the rest was being written
        if not torn:
            parts.pop()
        return cls(list(enumerate(parts, 1)), torn)

    @property
    def records(self) -> int:
        return max(len(self.lines) - 1, 0)


def _parse_header(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or "run" not in header:
        raise UserError(f"{path} is not an hrdeploy partial result (its first line is not a run header)",
                        "move it away, or pass --restart to replace it")
    return header


def _parse_record(n: int, raw: bytes, path: Path, known: set[str], first: dict[str, int],
                  metric: Metric) -> tuple[str, dict[str, Any]]:
    where = f"{path}:{n}"
    try:
        rec = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{where}: not a JSON record ({getattr(e, 'msg', e)})", _DAMAGED) from None
    # "input_sizes" (optional): the network input sizes of the sample, for eval's images per gear;
    # "worker" (optional): where it ran (hrdeploy.executor.Finished), never part of the result
    if not isinstance(rec, dict) or set(rec) - {"input_sizes", "worker"} != {"id", "prediction"}:
        keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
        raise UserError(f"{where}: expected a record {{\"id\", \"prediction\"}}, found {short_json(keys)}", _DAMAGED)
    key = rec["id"]
    if not isinstance(key, str):
        raise UserError(f"{where}: the sample id is {short_json(key)}, not a string", _DAMAGED)
    if key not in known:
        raise UserError(f"{where}: sample {key!r} is not one of this evaluation's images", _DAMAGED)
    if key in first:
        raise UserError(f"{where}: sample {key!r} is recorded twice (first on line {first[key]})", _DAMAGED)
    sizes = rec.get("input_sizes", [])
    if not isinstance(sizes, list) or not all(
            isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in s)
            for s in sizes):
        raise UserError(f"{where}: input_sizes is {short_json(sizes)}, not a list of [H, W]", _DAMAGED)
    problem = metric.check_prediction(rec["prediction"])
    if problem:
        raise UserError(f"{where}: the prediction of {key!r} is not one this model makes: {problem}", _DAMAGED)
    first[key] = n
    return key, rec["prediction"]


def _header_line(identity: RunIdentity) -> bytes:
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    head = {"format": FORMAT, "run": identity.key, "created": created, "identity": identity.to_dict()}
    return (json.dumps(head, separators=(",", ":")) + "\n").encode()


def open_partial(path: Path, identity: RunIdentity, refs: Sequence[SampleRef], metric: Metric, *,
                 resume: bool, restart: bool, log: Callable[[str], None]) -> tuple[dict[str, dict[str, Any]], IO[str]]:
    """The predictions already stored for this run and the partial file open for appending.

    A partial file with records is never replaced silently: without ``resume`` or ``restart``
    it is refused; with ``resume`` it must belong to ``identity`` (else the refusal says what
    changed, the file untouched) and every record must be valid."""
    if resume and restart:
        raise UserError("--resume and --restart contradict each other",
                        "--resume continues the interrupted run, --restart discards it")
    done: dict[str, dict[str, Any]] = {}
    if path.exists() and not restart:
        lines = _Lines.read(path)
        if lines.records:  # a header alone (or its torn start) holds nothing to lose
            if not resume:
                raise UserError(f"{path} holds an interrupted evaluation ({_count(lines.records, 'record')})",
                                "continue it with --resume, or pass --restart to discard it and start again")
            done = _load(path, lines, identity, refs, metric, log)
            return done, open(path, "a", encoding="utf-8")
    atomic_write_bytes(path, _header_line(identity))
    return done, open(path, "a", encoding="utf-8")


def _load(path: Path, lines: _Lines, identity: RunIdentity, refs: Sequence[SampleRef], metric: Metric,
          log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    header = _parse_header(lines.lines[0][1], path)
    if header.get("format") != FORMAT or not isinstance(header.get("identity"), dict):
        raise UserError(f"{path} was written by an older hrdeploy that did not record what it ran",
                        "pass --restart to discard it and start again")
    if header["run"] != identity.key:
        try:
            what = describe_changes(header["identity"], identity)
        except (TypeError, ValueError, AttributeError):  # an edited header: its fields are not what was written
            raise UserError(f"{path}: its run header is damaged", _DAMAGED) from None
        raise UserError(f"{path} belongs to another evaluation: {what}", _RESTART)
    known = {r.id for r in refs}
    first: dict[str, int] = {}
    done: dict[str, dict[str, Any]] = {}
    records = lines.lines[1:]
    dropped = False
    if lines.torn:
        _, raw = records[-1]
        try:
            json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            records = records[:-1]  # the record being written when the run was killed
            dropped = True
    for n, raw in records:
        key, pred = _parse_record(n, raw, path, known, first, metric)
        done[key] = pred
    if lines.torn:
        # rewritten before anything is appended: a record added after a torn line would be lost with it
        atomic_write_bytes(path, lines.lines[0][1] + b"\n" + b"".join(raw + b"\n" for _, raw in records))
        if dropped:
            log(f"dropped the unfinished last line of {path.name} (the record being written when the run stopped)")
    return done
