"""The built wheel holds every module of the source tree: a subpackage can never be left out of a release.

Build the wheel the way a release does, install it into a fresh directory, and from outside the checkout import
every module it ships and run ``sami-kit --help`` — against the *installed* copy, not the editable one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _source_modules() -> set[str]:
    names = set()
    for path in (ROOT / "sami_toolkit").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.slow
def test_wheel_ships_every_module_and_runs(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("sami_kit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.endswith(".py")}
        assert any(name.startswith("sami_toolkit/principle_sets/") and name.endswith(".yaml")
                   for name in archive.namelist())
    shipped_modules = set()
    for name in shipped:
        parts = Path(name).with_suffix("").parts
        if parts[0] == "sami_toolkit" and "principle_sets" not in parts:
            shipped_modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert _source_modules() - shipped_modules == set()

    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target), "SAMI_KIT_LOAD_PLUGINS": ""}
    probe = ("import importlib, pkgutil, sami_toolkit\n"
             f"assert sami_toolkit.__file__.startswith({str(target)!r}), sami_toolkit.__file__\n"
             "names = [m.name for m in pkgutil.walk_packages(sami_toolkit.__path__, 'sami_toolkit.')]\n"
             "for name in names:\n    importlib.import_module(name)\n"
             "print(len(names))\n")
    imported = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert int(imported.stdout.split()[-1]) >= len(shipped_modules) - 1
    helped = subprocess.run([sys.executable, "-m", "sami_toolkit", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "Usage: " in helped.stdout and "run" in helped.stdout
