"""The built wheel carries the sandbox runtime: installed into a fresh virtual environment, it runs a program."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_the_demo_with_its_packaged_runtime(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = (tmp_path / "dist").glob("ptc_mcp-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "ptc_mcp/_sandbox/ptc_runtime.py" in names
    assert "ptc_mcp/examples/audit_program.txt" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=900)
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import ptc_mcp, pathlib; print(pathlib.Path(ptc_mcp.__file__).parent)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
    )
    assert str(venv) in where.stdout  # the installed package, not this checkout
    demo = subprocess.run(
        [str(venv / "bin" / "ptc-mcp"), "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "checked against the ground truth" in demo.stdout
