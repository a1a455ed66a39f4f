"""Virtual environments for tests that pip-install packages built outside the repository."""
from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path


def venv_seeing_this_environment(env_dir: Path) -> Path:
    """A fresh virtual environment that also sees the packages of the environment running the
    tests (where hrdeploy is installed); returns its python.

    `venv --system-site-packages` would expose the *base* interpreter's packages, not those of
    the virtual environment running pytest. addsitedir (not a bare path line) also processes
    that environment's own .pth files, which is where editable installs put their finders."""
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    inner_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                     check=True, capture_output=True, text=True).stdout.strip())
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (inner_site / "zz_running_env.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in outer))
    return python
