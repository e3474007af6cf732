"""The wheel: built from a clean copy of the checkout (what git would commit,
nothing else), installed by one pip command into a fresh virtual environment,
runs a map of a script's function and a lambda with no other setup."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _clean_copy(dst: Path) -> None:
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.split(b"\0")
    for f in files:
        if not f:
            continue
        src = ROOT / f.decode()
        if not src.is_file():
            continue  # deleted in the work tree
        out = dst / f.decode()
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)


def _tree(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if shutil.which("go") is None:
        pytest.fail("go is needed to build the wheel")
    src = tmp_path_factory.mktemp("checkout")
    _clean_copy(src)
    before = _tree(src)
    out = tmp_path_factory.mktemp("dist")
    # pip's own build of python/ (the in-tree backend), as `pip install ./python` does.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src / "python")], check=True)
    after = _tree(src)
    assert after == before, f"building wrote into the checkout: {sorted(after - before)[:10]}"
    wheels = list(out.glob("skeinrun-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = z.getinfo("skeinrun/bin/submit")
        assert (info.external_attr >> 16) & 0o111, "submit is not executable in the wheel"
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "skeinrun/executor.py" in names and "Requires-Dist: cloudpickle" in meta
    assert not any("egg-info" in n or "__pycache__" in n or n.startswith("tests/") for n in names)
    assert "-py3-none-" in wheel.name and ("linux" in wheel.name or "macosx" in wheel.name)


def test_fresh_venv_runs_a_map(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # One pip command (cloudpickle comes as the wheel's dependency).
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True)
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        from skeinrun import FunctionExecutor, submit_path

        def square(x):
            return x * x

        offset = 5
        with FunctionExecutor() as fexec:
            fexec.map(square, range(10))
            print(fexec.get_result())
            print(fexec.map(lambda v: v + offset, [1, 2]).get_result())
        print(submit_path())
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEIN_") and k not in ("PYTHONPATH",)}
    env["PATH"] = "/usr/bin:/bin"  # no go, no submit on PATH: only what the wheel brought
    r = subprocess.run([str(py), str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"
    assert lines[1] == "[6, 7]"
    assert lines[2].startswith(str(venv)) and lines[2].endswith("skeinrun/bin/submit")
