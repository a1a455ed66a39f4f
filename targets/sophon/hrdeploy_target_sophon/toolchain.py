"""Where TPU-MLIR lives and how it gets there.

TPU-MLIR 1.30.2 is a Python 3.10 package with its own pins (numpy 1.24.3, onnx 1.14.1,
onnxruntime 1.16.3, ...) that clash with the project's environment, so it gets a virtual
environment of its own: ``$HRDEPLOY_TOOLCHAINS/sophon/venv`` (default
``~/.cache/hrdeploy/toolchains/sophon/venv``), described by ``toolchain.json`` beside it.
Nothing here installs anything unless the user runs ``hrdeploy toolchain install sophon``.

A TPU-MLIR already on PATH (a vendor docker image) is used as it is when no provisioned
environment exists.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hrdeploy.errors import UserError
from hrdeploy.kit.toolrun import COMPILE_TIMEOUT, run_tool

TPU_MLIR_VERSION = "1.30.2"
PYTHON_VERSION = "3.10"
PYENV_VERSION = "3.10.13"
#: what ``pip install`` gets, besides torch. onnx/onnxruntime/onnxsim are the wheel's own
#: ``[onnx]`` extra; psutil is imported but not declared; setuptools must still ship
#: pkg_resources (tpu_mlir/__init__.py imports it; setuptools >= 81 dropped it).
PINS = (f"tpu_mlir=={TPU_MLIR_VERSION}", "onnx==1.14.1", "onnxruntime==1.16.3", "onnxsim==0.4.17",
        "psutil", "setuptools==79.0.1")
#: tpu_mlir imports torch at start-up (transform/OnnxOpt.py for model_transform,
#: calibration/kld_calibrator.py for run_calibration) but calls it on no path the ONNX flow
#: takes. PyPI only has CUDA builds for Linux; 1.12.1 is the newest one that bundles its CUDA
#: libraries instead of depending on the nvidia-* wheels: a 776 MB wheel (1.6 GB installed)
#: instead of ~4 GB for torch 2.x. Override with HRDEPLOY_SOPHON_TORCH (e.g. "torch==2.11.0",
#: the version tpu_mlir's own [torch] extra names).
TORCH_REQUIREMENT = "torch==1.12.1"
#: the wheel bundles an Ubuntu glibc and puts it first on LD_LIBRARY_PATH; on a newer host
#: glibc every tool then dies with "GLIBC_2.36 not found (required by libexpat.so.1)"
GLIBC_FILES = ("libc.so.6", "libm.so.6", "libpthread.so.0")
GLIBC_ASIDE = "glibc-disabled"
STATE_FILE = "toolchain.json"
INSTALL_HINT = "run 'hrdeploy toolchain install sophon' (creates a Python 3.10 environment with TPU-MLIR)"

Log = Callable[[str], None]


def toolchains_root() -> Path:
    env = os.environ.get("HRDEPLOY_TOOLCHAINS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hrdeploy" / "toolchains"


def sophon_home() -> Path:
    return toolchains_root() / "sophon"


@dataclass
class Toolchain:
    """A usable TPU-MLIR: the interpreter that imports it and the folder of its commands."""

    python: Path
    bin_dir: Path
    version: str
    origin: str  # "provisioned" (our venv) or "path" (found on PATH)
    home: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Environment overrides for TPU-MLIR commands: its bin/ first on PATH. The wrappers
        there import tpu_mlir, which sets LD_LIBRARY_PATH/PYTHONPATH for the real tool."""
        return {"PATH": os.pathsep.join([str(self.bin_dir), os.environ.get("PATH", "")])}

    def describe(self) -> str:
        where = self.home if self.origin == "provisioned" else self.bin_dir
        return f"tpu_mlir {self.version} ({self.origin}: {where})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": "tpu_mlir", "version": self.version, "origin": self.origin,
                "python": str(self.python), "bin": str(self.bin_dir),
                "torch": self.state.get("torch"), "python_version": self.state.get("python_version")}


def read_state(home: Path | None = None) -> dict[str, Any] | None:
    path = (home or sophon_home()) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) else None


def find_toolchain(home: Path | None = None) -> Toolchain | None:
    """The provisioned environment if its state file points at a live interpreter, else a
    TPU-MLIR found on PATH, else None. Cheap: reads a file and stats a few paths."""
    home = home or sophon_home()
    state = read_state(home)
    if state:
        py, bin_dir = Path(state.get("python", "")), Path(state.get("bin", ""))
        if py.is_file() and (bin_dir / "model_deploy").exists():
            return Toolchain(py, bin_dir, str(state.get("tpu_mlir", "unknown")), "provisioned", home, state)
    exe = shutil.which("model_deploy")
    if exe:
        bin_dir = Path(exe).resolve().parent
        py = _shebang_python(Path(exe)) or Path(sys.executable)
        return Toolchain(py, bin_dir, _version_on_path(py), "path")
    return None


def _shebang_python(script: Path) -> Path | None:
    try:
        first = script.read_bytes()[:256].split(b"\n", 1)[0].decode("utf-8", "replace")
    except OSError:
        return None
    if first.startswith("#!"):
        cand = Path(first[2:].strip().split()[0])
        if cand.name == "env":
            return None
        return cand if cand.is_file() else None
    return None


def _version_on_path(python: Path) -> str:
    try:
        out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('tpu_mlir'))"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


# -- provisioning -------------------------------------------------------------------------------

def default_python() -> str:
    """The interpreter for a new environment: HRDEPLOY_SOPHON_PYTHON, else pyenv's 3.10.13
    (``PYENV_VERSION=3.10.13 pyenv exec python``), else ``python3.10`` on PATH."""
    env = os.environ.get("HRDEPLOY_SOPHON_PYTHON")
    if env:
        return env
    if shutil.which("pyenv"):
        try:
            out = subprocess.run(["pyenv", "exec", "python", "-c", "import sys; print(sys.executable)"],
                                 capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "PYENV_VERSION": PYENV_VERSION})
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[-1]
        except (OSError, subprocess.TimeoutExpired):
            pass
    exe = shutil.which("python3.10")
    if exe:
        return exe
    raise UserError("no Python 3.10 interpreter found (TPU-MLIR 1.30.2 supports only 3.10)",
                    f"install one (e.g. 'pyenv install {PYENV_VERSION}') and pass --python PATH")


def python_version(python: str) -> str:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"cannot run the interpreter {python}: {e}") from None
    if out.returncode != 0:
        raise UserError(f"cannot run the interpreter {python}: {out.stderr.strip()[-200:]}")
    return out.stdout.strip()


def glibc_version(text: bytes | str) -> tuple[int, int] | None:
    """(major, minor) from a libc.so.6 banner ("... stable release version 2.35.") or from
    ``os.confstr('CS_GNU_LIBC_VERSION')`` ("glibc 2.36")."""
    if isinstance(text, bytes):
        m = re.search(rb"GNU C Library[^\n\x00]*?version (\d+)\.(\d+)", text)
    else:
        m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def fix_bundled_glibc(package_dir: Path, log: Log) -> list[str]:
    """Move the wheel's bundled glibc aside when the host's is newer (the host's own
    libraries then need symbols the old copy lacks). Returns the files moved."""
    third = package_dir / "lib" / "third_party"
    libc = third / "libc.so.6"
    if not libc.is_file():
        return []
    bundled = glibc_version(libc.read_bytes())
    try:
        host = glibc_version(os.confstr("CS_GNU_LIBC_VERSION") or "")
    except (ValueError, OSError):
        host = None
    if bundled is None or host is None or host <= bundled:
        log(f"keeping the bundled glibc {bundled} (host glibc {host})")
        return []
    aside = third / GLIBC_ASIDE
    aside.mkdir(exist_ok=True)
    moved = []
    for name in GLIBC_FILES:
        src = third / name
        if src.exists() or src.is_symlink():
            os.replace(src, aside / name)
            moved.append(name)
    log(f"moved the bundled glibc {bundled[0]}.{bundled[1]} ({', '.join(moved)}) to {aside} "
        f"(host glibc {host[0]}.{host[1]} is newer)")
    return moved


def _stream(argv: list[str], logfile: Path, log: Log, echo: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> int:
    """Run a command with its output appended to ``logfile``; lines starting with ``echo``
    prefixes are also passed to ``log`` so a long pip run shows progress."""
    def show(line: str) -> None:
        if echo and line.lstrip().startswith(echo):
            log("  " + line.strip()[:150])

    return run_tool(argv, step=" ".join([Path(argv[0]).name, *argv[1:3]]), log=logfile, append=True,
                    env={**os.environ, **(env or {})}, timeout=COMPILE_TIMEOUT, on_line=show,
                    timeout_hint="check the network, then re-run 'hrdeploy toolchain install sophon'").returncode


def _folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def install_toolchain(python: str | None, log: Log, home: Path | None = None,
                      torch: str | None = None) -> Path:
    """Create (or complete) the TPU-MLIR environment and write its state file; returns the
    state file's path. Re-running on a complete environment only re-checks it."""
    t0 = time.perf_counter()
    home = home or sophon_home()
    home.mkdir(parents=True, exist_ok=True)
    logfile = home / "install.log"
    interpreter = python or default_python()
    version = python_version(interpreter)
    if not version.startswith(PYTHON_VERSION + "."):
        raise UserError(f"TPU-MLIR {TPU_MLIR_VERSION} needs Python {PYTHON_VERSION}; {interpreter} is {version}",
                        "pass --python PATH to a Python 3.10 interpreter")
    venv = home / "venv"
    vpy = venv / "bin" / "python"
    if vpy.exists() and not _runs(vpy):
        log(f"removing the broken environment {venv}")
        shutil.rmtree(venv)
    if not vpy.exists():
        log(f"creating a Python {version} environment in {venv}")
        if _stream([interpreter, "-m", "venv", str(venv)], logfile, log) != 0:
            raise UserError(f"could not create a virtual environment with {interpreter}; log: {logfile}")
    torch_req = torch or os.environ.get("HRDEPLOY_SOPHON_TORCH") or TORCH_REQUIREMENT
    reqs = [*PINS, torch_req]
    log(f"pip install {' '.join(reqs)} (tpu_mlir is a 312 MB wheel, torch several hundred MB; log: {logfile})")
    rc = _stream([str(vpy), "-m", "pip", "install", "--disable-pip-version-check", *reqs], logfile, log,
                 echo=("Collecting", "Downloading", "Successfully installed", "ERROR"))
    if rc != 0:
        raise UserError(f"pip could not install TPU-MLIR into {venv} (exit {rc}); log: {logfile}")
    pkg = _package_dir(vpy)
    moved = fix_bundled_glibc(pkg, log)
    # the files may have been moved by an earlier run: record what is aside now
    aside = pkg / "lib" / "third_party" / GLIBC_ASIDE
    moved_now = sorted(p.name for p in aside.iterdir()) if aside.is_dir() else moved
    log("checking that the tools start (model_deploy -V)")
    check = run_tool([str(venv / "bin" / "model_deploy"), "-V"], step="model_deploy -V", timeout=600,
                     env={**os.environ, "PATH": os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "")])})
    if check.returncode != 0 or "v" not in check.stdout:
        tail = check.stdout.strip().splitlines()[-1:] or [""]
        raise UserError(f"TPU-MLIR is installed but model_deploy does not start: {tail[0][:200]}; log: {logfile}")
    versions = _versions(vpy)
    state = {
        "tpu_mlir": versions.get("tpu_mlir", TPU_MLIR_VERSION), "torch": versions.get("torch"),
        "onnx": versions.get("onnx"), "onnxruntime": versions.get("onnxruntime"), "numpy": versions.get("numpy"),
        "python_version": version, "base_interpreter": interpreter,
        "python": str(vpy), "bin": str(venv / "bin"), "venv": str(venv), "package_dir": str(pkg),
        "glibc_moved_aside": moved_now, "requirements": reqs,
        "installed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "install_seconds": round(time.perf_counter() - t0, 1),
        "size_bytes": _folder_size(venv),
        "model_deploy_version": check.stdout.strip().splitlines()[-1][:120],
    }
    from hrdeploy.io import atomic_write_json

    path = home / STATE_FILE
    atomic_write_json(path, state)
    return path


def _runs(python: Path) -> bool:
    try:
        return subprocess.run([str(python), "-c", "pass"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _package_dir(vpy: Path) -> Path:
    # find_spec on a top-level package locates it without running its __init__
    out = subprocess.run([str(vpy), "-c", "import importlib.util, os; "
                          "print(os.path.dirname(importlib.util.find_spec('tpu_mlir').origin))"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"tpu_mlir is not importable in {vpy}: {out.stderr.strip()[-200:]}")
    return Path(out.stdout.strip())


def _versions(vpy: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json\nout = {}\n"
            "for n in ('tpu_mlir', 'torch', 'onnx', 'onnxruntime', 'numpy'):\n"
            "    try: out[n] = m.version(n)\n    except Exception: pass\nprint(json.dumps(out))")
    out = subprocess.run([str(vpy), "-c", code], capture_output=True, text=True)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {}


def human_size(n: int | None) -> str:
    if not n:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
