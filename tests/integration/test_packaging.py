"""`pip install .` into a fresh virtual environment gives a twistd that finds sysadmd
from any directory, without shipping twisted/plugins/__init__.py or a dropin.cache."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SKIP = shutil.ignore_patterns(".venv", ".git", ".state", "build", "dist", "*.egg-info",
                              "__pycache__", "dropin.cache", ".pytest_cache", ".hypothesis",
                              "node_modules", "results")


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("pkg")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=SKIP)
    venv = base / "venv"
    # A PYTHONPATH naming a checkout would make pip see sysadmd installed already.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    wheels = base / "wheels"
    subprocess.run(
        [str(python), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True, capture_output=True, text=True, env=env,
    )
    [wheel] = list(wheels.glob("sysadmd-*.whl"))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True, capture_output=True, text=True, env=env,
    )
    return venv, wheel


def test_wheel_ships_the_plugin_file_only(fresh_venv):
    _, wheel = fresh_venv
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/sysadmd_plugins.py" in names
    assert "twisted/plugins/__init__.py" not in names
    assert not [n for n in names if n.endswith("dropin.cache")]
    assert "sysadmd/plugins/__init__.py" in names
    # The dashboard's files, or an installed daemon answers 404 at /.
    assert {"sysadmd/web/dashboard/index.html", "sysadmd/web/dashboard/app.js",
            "sysadmd/web/dashboard/output.js",
            "sysadmd/web/dashboard/style.css"} <= set(names)


def test_twistd_finds_sysadmd_from_any_directory(fresh_venv, tmp_path):
    venv, _ = fresh_venv
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(venv / "bin" / "twistd"), "--help"],
        capture_output=True, text=True, cwd=str(elsewhere), env=env,
    )
    assert "sysadmd" in result.stdout, result.stdout + result.stderr
    result = subprocess.run(
        [str(venv / "bin" / "twistd"), "-n", "sysadmd", "--help"],
        capture_output=True, text=True, cwd=str(elsewhere), env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and "--listen" in result.stdout
    # The installed copy, not the checkout, answered.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysadmd; print(sysadmd.__file__)"],
        capture_output=True, text=True, cwd=str(elsewhere), env=env, check=True,
    ).stdout
    assert where.startswith(str(venv))
    assert (venv / "bin" / "sysadmd-admin").exists()
