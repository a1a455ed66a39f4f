"""Checkpoints cannot run code, and broken weights are named (issues 14.1 and 13.4).

Every hostile file here is built the way an attacker would build it: a pickle whose loading
calls os.system or builtins.exec to create a marker file, placed in each slot torch unpickles
(a plain pickle, the legacy format's magic-number / sys_info / storage-keys pickles, the
zip format's data.pkl, the pre-zip .tar format's members). Each is refused with one line
naming what it asks for, and the marker never appears. Legitimate checkpoints in every
format, with what training frameworks pickle next to the weights, still load.
"""
from __future__ import annotations

import argparse
import builtins
import collections
import datetime
import io
import os
import pickle
import pickletools
import shlex
import subprocess
import sys
import tarfile
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from hrdeploy.checkpoints import Opaque, read_checkpoint, read_state_dict, refuse_non_finite
from hrdeploy.errors import WeightsError
from hrdeploy.parity import compare, table_rows
from hrdeploy.testing.seeded import seeded_state_dict

REFUSED = "{name} is not a tensor checkpoint: it contains {what} (refused; nothing in it was run)"


class Payload:
    """Pickles as the call ``fn(*args)``, made when the file is unpickled."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def shell_payload(marker: Path) -> Payload:
    return Payload(os.system, f"touch {shlex.quote(str(marker))}")


def exec_payload(marker: Path) -> Payload:
    return Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()")


def weights() -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict(conv=torch.arange(6.0).reshape(2, 3), bn=torch.ones(2))


def legacy_slots(obj: object) -> list[bytes]:
    """torch.save's legacy (non-zip) layout cut into its parts: the magic number, protocol
    version, sys_info and object pickles, the storage-keys pickle, then the raw storages."""
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    data, f, parts, start = buf.getvalue(), io.BytesIO(buf.getvalue()), [], 0
    for _ in range(5):
        for _ in pickletools.genops(f):  # reads one pickle, to its STOP
            pass
        parts.append(data[start:f.tell()])
        start = f.tell()
    return parts + [data[start:]]


def tar_checkpoint(path: Path, members: dict[str, bytes]) -> Path:
    """The pre-zip .tar layout torch.load still reads: members storages, tensors, pickle."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def hostile(kind: str, path: Path, marker: Path) -> str:
    """Write the hostile file ``kind`` to ``path``; returns what the refusal names."""
    shell = shell_payload(marker)
    if kind == "plain-pickle-os.system":
        path.write_bytes(pickle.dumps(shell, protocol=2))
    elif kind == "plain-pickle-exec":
        path.write_bytes(pickle.dumps(exec_payload(marker), protocol=2))
        return "a call to builtins.exec"
    elif kind == "protocol-0-inst":  # INST: os.system('touch MARKER'), as text opcodes
        path.write_bytes(b"(S" + repr(f"touch {marker}").encode() + b"\nios\nsystem\n.")
    elif kind == "getattr-import":  # getattr(__import__('os'), 'system')('touch MARKER')
        path.write_bytes(b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S"
                         + repr(f"touch {marker}").encode() + b"\ntR.")
        return "a call to builtins.getattr"
    elif kind.startswith("legacy-"):
        slot = {"legacy-magic": 0, "legacy-sys_info": 2, "legacy-storage-keys": 4}[kind]
        parts = legacy_slots(weights())
        parts[slot] = pickle.dumps(shell, protocol=2)
        path.write_bytes(b"".join(parts))
    elif kind == "zip-data.pkl":
        torch.save({"state_dict": weights(), "meta": {"hook": shell}}, path)
    elif kind == "zip-subprocess":
        torch.save({"state_dict": weights(), "x": Payload(subprocess.call, ["touch", str(marker)])}, path)
        return "a call to subprocess.call"
    elif kind == "tar-pickle":
        tar_checkpoint(path, {"storages": pickle.dumps(0) + pickle.dumps([]), "tensors": pickle.dumps(0),
                              "pickle": pickle.dumps(shell, protocol=2)})
    else:
        raise AssertionError(kind)
    return "a call to os.system"


HOSTILE = ["plain-pickle-os.system", "plain-pickle-exec", "protocol-0-inst", "getattr-import",
           "legacy-magic", "legacy-sys_info",
           "legacy-storage-keys", "zip-data.pkl", "zip-subprocess", "tar-pickle"]


def _message(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


# -- hostile files ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_checkpoint_is_refused_without_running(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    what = hostile(kind, path, marker)
    with pytest.raises(WeightsError) as exc:
        read_state_dict(path)
    assert not marker.exists()
    assert _message(exc) == REFUSED.format(name="evil.pth", what=what)


def test_the_hostile_files_do_run_under_plain_torch_load(tmp_path):
    """Each hostile file is real: torch.load(weights_only=False), as the old fallback did,
    runs its payload. (In one child process, so the markers are the only effect.)"""
    paths = []
    for kind in HOSTILE:
        path = tmp_path / f"{kind}.pth"
        hostile(kind, path, tmp_path / f"{kind}.ran")
        paths.append(str(path))
    code = ("import sys, torch\nfor p in sys.argv[1:]:\n    try:\n        torch.load(p, weights_only=False)\n"
            "    except Exception:\n        pass\n")
    subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, check=True)
    assert sorted(p.name for p in tmp_path.glob("*.ran")) == sorted(f"{kind}.ran" for kind in HOSTILE)


def test_attribute_assignment_on_a_class_is_refused(tmp_path):
    # GLOBAL mmengine.hub MessageHub; BUILD (None, {'x': 1}) on the class itself: would set
    # an attribute on the placeholder that the next object built could call
    path = tmp_path / "build.pth"
    path.write_bytes(b"cmmengine.hub\nMessageHub\n(N}S'x'\nI1\nstb.")
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(path)
    assert _message(exc) == REFUSED.format(name="build.pth", what="an attribute assignment on the class MessageHub")


def test_tar_member_that_is_a_link_is_refused(tmp_path):
    path = tmp_path / "link.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("storages")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/hostname"
        tar.addfile(info)
        for name in ("tensors", "pickle"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(pickle.dumps(0)[:3]))
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(path)
    assert _message(exc) == REFUSED.format(name="link.tar", what="a 'storages' member that is not a regular file")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_archive_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(path)
    assert _message(exc).startswith("scripted.pt is a TorchScript archive (a compiled model), not a tensor checkpoint")


# -- legitimate files ---------------------------------------------------------------------------

def training_checkpoint() -> dict:
    """What timm / mm* training scripts save: wrapper, DataParallel prefix, an argparse
    Namespace, numpy scalars and arrays, optimizer state."""
    return {"epoch": 99, "arch": "hrnet_w18_small",
            "state_dict": OrderedDict(("module." + k, v) for k, v in weights().items()),
            "args": argparse.Namespace(lr=0.05, output=Path("/runs/x")),
            "best_acc1": np.float64(72.3), "history": np.arange(3),
            "time": datetime.datetime(2026, 1, 2, 3, 4, 5), "meters": collections.defaultdict(list, loss=[0.5]),
            "optimizer": {"state": {0: {"momentum_buffer": torch.ones(2)}},
                          "param_groups": [{"lr": 0.05, "momentum": 0.9, "params": [0, 1]}]}}


def _assert_same_weights(sd) -> None:
    want = weights()
    assert list(sd) == list(want)
    assert all(torch.equal(sd[k], want[k]) for k in want)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_plain_state_dict_loads(tmp_path, legacy):
    path = tmp_path / "w.pth"
    torch.save(weights(), path, _use_new_zipfile_serialization=not legacy)
    sd, notes = read_state_dict(path)
    _assert_same_weights(sd)
    assert notes == []


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_training_checkpoint_loads_with_inert_placeholders(tmp_path, legacy):
    path = tmp_path / "checkpoint-99.pth.tar"
    torch.save(training_checkpoint(), path, _use_new_zipfile_serialization=not legacy)
    obj = read_checkpoint(path)
    for key, origin in (("args", "argparse.Namespace"), ("best_acc1", "numpy._core.multiarray.scalar"),
                        ("history", "numpy._core.multiarray._reconstruct"), ("time", "datetime.datetime"),
                        ("meters", "collections.defaultdict")):
        assert isinstance(obj[key], Opaque) and type(obj[key]).origin.replace("._core.", ".core.") \
            == origin.replace("._core.", ".core."), key
    assert not hasattr(obj["args"], "lr")                  # nothing of it was built
    assert torch.equal(obj["optimizer"]["state"][0]["momentum_buffer"], torch.ones(2))
    sd, notes = read_state_dict(path)
    _assert_same_weights(sd)
    assert notes == ["'state_dict' wrapper", "'module.' prefix stripped"]


def test_legacy_whole_module_is_explained_without_warnings(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(torch.nn.Linear(2, 3), path, _use_new_zipfile_serialization=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "couldn't retrieve source" / source-change notes
        with pytest.raises(WeightsError) as exc:
            read_state_dict(path)
    assert _message(exc) == ("whole.pth holds a pickled torch.nn.modules.linear.Linear, not a state_dict "
                             "(save model.state_dict() instead of the whole model)")
    assert list(tmp_path.iterdir()) == [path]             # no .patch file written


@pytest.mark.parametrize("name", ["model.safetensors", "model.pth"])
def test_safetensors_loads_by_suffix_or_content(tmp_path, name):
    from safetensors.torch import save_file

    path = tmp_path / name
    save_file({"module." + k: v for k, v in weights().items()}, str(path), metadata={"format": "pt"})
    sd, notes = read_state_dict(path)
    assert sorted(sd) == sorted(weights()) and all(torch.equal(sd[k], v) for k, v in weights().items())
    assert notes == ["'module.' prefix stripped"]


def test_corrupt_safetensors_is_one_line(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "cut.safetensors"
    save_file(dict(weights()), str(path))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(path)
    assert _message(exc).startswith("cannot read cut.safetensors: not a safetensors file or corrupt (")


def test_safetensors_without_the_package_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(path)
    assert _message(exc) == ("model.safetensors is a .safetensors file, and reading it needs the safetensors "
                             "package (pip install 'hrdeploy[safetensors]')")


# -- non-finite weights and outputs -------------------------------------------------------------

def test_non_finite_weights_are_named():
    sd = OrderedDict((f"w{i}", torch.ones(3)) for i in range(6))
    sd["steps"] = torch.tensor(3)                          # integers are never non-finite
    refuse_non_finite(sd, "ok.pth")
    for i, bad in ((1, float("nan")), (2, float("inf")), (4, float("-inf")), (5, float("nan"))):
        sd[f"w{i}"] = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(WeightsError) as exc:
        refuse_non_finite(sd, "diverged.pth")
    assert _message(exc) == ("diverged.pth holds NaN or infinite values in 4 tensors (w1, w2, w4, ...): the weights "
                             "are broken (use a checkpoint saved before training diverged)")


def test_parity_with_non_finite_values_never_says_ok():
    from hrdeploy.plugins import registry

    spec = registry().model("hrnet_cls")
    variant = spec.variant("w18_small_v1")
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 1000)).astype(np.float32)
    test = np.full_like(ref, np.nan)                       # argmax agrees with argmax: "100 %"
    report = compare(spec, variant, [ref], [test], "fp32", "pytorch", "onnxruntime")
    assert not report.passed and not report.finite
    assert report.failures() == ["onnxruntime produces NaN/inf in output 'logits' (4000 of 4000 values)"]
    rows = table_rows(report.to_dict())
    assert [r[-1].split(":")[0] for r in rows] == ["NaN/inf", "NaN/inf"]
    assert rows == report.rows()
    report = compare(spec, variant, [test], [ref], "fp32", "pytorch", "onnxruntime")
    assert report.failures() == ["pytorch itself produces NaN/inf in output 'logits' (4000 of 4000 values): "
                                 "the reference is broken"]


# -- through the CLI ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_v1(fixtures_dir) -> "OrderedDict[str, torch.Tensor]":
    return seeded_state_dict(fixtures_dir / "official" / "hrnet_cls" / "w18_small_v1.official.json", seed=0)


def _export(run_cli, weights_path: Path, out: Path):
    return run_cli("export", "hrnet_cls", "--variant", "w18_small_v1", "--weights", weights_path, "-o", out)


def _one_error_line(res) -> str:
    """The CLI's one error line (progress lines such as "weights: ..." may precede it)."""
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in res.err, res
    return errors[0][len("error: "):]


@pytest.mark.parametrize("kind", ["plain-pickle-os.system", "plain-pickle-exec", "legacy-sys_info", "zip-data.pkl"])
def test_cli_export_refuses_hostile_checkpoint(kind, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker, path, out = tmp_path / "pwned", tmp_path / "evil.pth", tmp_path / "x.onnx"
    what = hostile(kind, path, marker)
    res = _export(run_cli, path, out)
    assert res.code == 2, res
    assert _one_error_line(res) == REFUSED.format(name="evil.pth", what=what)
    assert not marker.exists() and not out.exists()


def test_cli_export_names_nan_weights(tmp_path, run_cli, small_v1):
    sd = OrderedDict((k, v.clone()) for k, v in small_v1.items())
    sd["conv1.weight"][0, 0, 0, 0] = float("nan")
    sd["bn1.running_var"][3] = float("inf")
    path, out = tmp_path / "diverged.pth", tmp_path / "x.onnx"
    torch.save({"state_dict": sd}, path)
    res = _export(run_cli, path, out)
    assert res.code == 2, res
    assert _one_error_line(res) == ("diverged.pth holds NaN or infinite values in 2 tensors (conv1.weight, "
                                    "bn1.running_var): the weights are broken (use a checkpoint saved before "
                                    "training diverged)")
    assert not out.exists()


def test_cli_export_says_pytorch_itself_produces_nan(tmp_path, run_cli, small_v1):
    # finite weights whose forward is not: a negative BatchNorm variance takes a square root
    sd = OrderedDict((k, v.clone()) for k, v in small_v1.items())
    sd["bn1.running_var"][:] = -1.0
    path, out = tmp_path / "negvar.pth", tmp_path / "x.onnx"
    torch.save(sd, path)
    res = _export(run_cli, path, out)
    assert res.code == 2, res
    line = _one_error_line(res)
    assert line.startswith("PyTorch itself produces NaN/inf in output 'logits' (") and line.endswith(
        "values): the weights or the model are broken"), line
    assert "max rel" not in res.out + res.err and not out.exists()


def test_cli_export_loads_a_legacy_training_checkpoint(tmp_path, run_cli, small_v1):
    ckpt = {**training_checkpoint(), "state_dict": OrderedDict(("module." + k, v) for k, v in small_v1.items())}
    path, out = tmp_path / "checkpoint-99.pth.tar", tmp_path / "x.onnx"
    torch.save(ckpt, path, _use_new_zipfile_serialization=False)
    res = _export(run_cli, path, out)
    assert res.code == 0, res
    assert out.is_file() and "'state_dict' wrapper" in res.out + res.err
