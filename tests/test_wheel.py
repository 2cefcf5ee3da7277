"""``pip install .`` (not editable) gives a captioner that carries its model (issue #14, defects 10-11).

The wheel is built from this checkout without build isolation (no index needed) and
installed without dependencies into a fresh virtual environment; the dependencies are
borrowed from the test environment's site-packages through a ``.pth`` line (which does
not run that environment's own ``.pth`` files, so the editable captioner stays out).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from clitools import REPO
from videos import make_video


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv's bin folder, with the wheel built from this checkout installed into it."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"  # a copy: building in the checkout would leave build/ behind (and reuse a stale one)
    for name in ("captioner", "weights"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(REPO / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(root / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    log = build.stdout + build.stderr
    assert "warning" not in log.lower(), log  # no setuptools complaints about the licence or package data
    wheel = next((root / "dist").glob("captioner-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "--no-deps", "--no-compile", "-q", str(wheel)], capture_output=True, text=True,
                             timeout=300)
    assert install.returncode == 0, install.stderr
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "borrowed-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv / "bin"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_installed_command_finds_its_model(installed, tmp_path):
    info = subprocess.run([str(installed / "captioner"), "info"], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(), timeout=120)
    assert info.returncode == 0, info.stderr
    shipped = json.loads((REPO / "weights" / "model.json").read_text())
    first = info.stdout.splitlines()[0]
    assert first.startswith(f"model:     {shipped['name']}  (") and "site-packages/captioner/_model" in first
    assert f"sha256:    {shipped['sha256']}" in info.stdout.splitlines()
    where = subprocess.run([str(installed / "python"), "-c", "import captioner; print(captioner.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=_env(), check=True).stdout
    assert str(REPO) not in where  # the wheel's copy, not this checkout
    assert (Path(where.strip()).parent / "py.typed").is_file()  # type checkers read its hints (PEP 561)
    licences = list(Path(where.strip()).parent.parent.glob("captioner-*.dist-info/licenses/LICENSE"))
    assert len(licences) == 1 and "Apache License" in licences[0].read_text()  # Apache-2.0 asks for its text


def test_the_installed_command_captions_a_video(installed, tmp_path):
    clip = make_video(tmp_path / "v.mp4", [("red", 1.0), ("checker", 1.0)]).path
    done = subprocess.run([str(installed / "captioner"), "run", str(clip), "--threads", "1", "-q"],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=180)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "v.srt").read_text().startswith("1\n00:00:00,000 --> ")
