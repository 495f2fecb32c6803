"""vidgen as an installable package: the wheel carries conf/ inside the package, every package folder and the
console scripts are declared, and the CLIs find their configs in a wheel and in a checkout.

``make test-wheel`` (.ci/test_wheel.sh) goes further: it installs the wheel into a new environment and runs the
CLIs from outside the repository.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT
from vidgen.runtime import CONFIG_DIR, find_config_dir

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
CLIS = ("train", "sample", "evaluate", "bench", "precompute")


def test_every_package_folder_is_declared() -> None:
    on_disk = {
        ".".join(folder.relative_to(REPO_ROOT).parts)
        for folder in {path.parent for path in (REPO_ROOT / "vidgen").rglob("*.py")}
        if "__pycache__" not in folder.parts
    }
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert on_disk - declared == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert declared - on_disk == {"vidgen.conf"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"vidgen.conf": "conf"}


def test_a_console_script_per_cli() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts == {f"vidgen-{cli}": f"vidgen.{cli}:main" for cli in CLIS}
    for cli in CLIS:
        assert callable(importlib.import_module(f"vidgen.{cli}").main)


def test_config_dir_of_a_wheel_and_of_a_checkout(tmp_path: Path) -> None:
    assert Path(CONFIG_DIR) == REPO_ROOT / "conf"  # this checkout (editable install): conf/ read live
    checkout = tmp_path / "checkout"
    (checkout / "vidgen").mkdir(parents=True)
    assert find_config_dir(checkout / "vidgen") == checkout / "conf"
    site = tmp_path / "site-packages"
    (site / "vidgen" / "conf").mkdir(parents=True)
    assert find_config_dir(site / "vidgen") == site / "vidgen" / "conf"


def test_the_wheel_holds_every_config_file_inside_the_package(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("vidgen", "conf"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            "dist",
            "./src",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("vidgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = REPO_ROOT / "conf"
    configs = {f"vidgen/conf/{path.relative_to(conf).as_posix()}" for path in conf.rglob("*.yaml")}
    assert {f"vidgen/conf/{cli}.yaml" for cli in CLIS} <= configs
    assert configs <= names
    assert {name for name in names if name.endswith(".yaml")} == configs  # nothing else, nowhere else
    assert "vidgen/runtime.py" in names and "vidgen/benchmark/measure.py" in names
