"""The built wheel installs one package, ``nearcast``, and nothing under a generic name.

The wheel is built from the checkout and installed into a fresh virtual environment. That
environment sees the test environment's third-party packages through a path entry (so nothing
is downloaded), but not its editable install of the checkout: what it imports of nearcast comes
from the wheel alone.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--quiet", "-w", str(out), str(REPO)], out)
    assert done.returncode == 0, done.stderr[-2000:]
    (found,) = out.glob("nearcast-*.whl")
    return found


def test_wheel_holds_only_the_nearcast_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"nearcast"}
    for expected in ("nearcast/__init__.py", "nearcast/models/estimator.py",
                     "nearcast/pipelines/data/m4_hourly_train.csv.gz",
                     "nearcast/service/cli.py", "nearcast/configs/quickstart.yaml"):
        assert expected in names


@pytest.mark.slow
def test_fresh_venv_imports_nearcast_and_no_generic_names(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path
                ).returncode == 0
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp_path).stdout.strip())
    done = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                 "--no-index", "--quiet", str(wheel)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # Third-party packages from the test environment, after the wheel's own site-packages.
    (site / "zz_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    for name in ("models", "service", "pipelines"):
        refused = _run([str(python), "-c", f"import {name}"], work)
        assert refused.returncode != 0 and "ModuleNotFoundError" in refused.stderr, name
    probe = ("import nearcast, nearcast.service.cli, nearcast.service.quickstart as q; "
             "print(nearcast.__file__); print(nearcast.__version__); "
             "print(q.quickstart_job().model.cell)")
    done = _run([str(python), "-c", probe], work)
    assert done.returncode == 0, done.stderr[-2000:]
    file, version, cell = done.stdout.split()
    assert Path(file).is_relative_to(site) and version == "0.1.0" and cell == "lstm"
    done = _run([str(venv / "bin" / "nearcast"), "--help"], work)
    assert done.returncode == 0 and "quickstart" in done.stdout, done.stderr[-2000:]
