"""The harness runs from an installed wheel: nothing it needs lives outside the package (``tests/`` above all).

The wheel is built from a copy of ``bridge/``, ``harness/``, ``pyproject.toml`` and ``README.md`` (so
only what ``pyproject.toml`` ships is in it) and installed with ``--no-deps`` into a fresh venv whose
only other path is this environment's site-packages (one ``.pth`` line: torch, transformers and
megatron-core come from there; that directory's own ``.pth`` files, the editable install of this
checkout included, are not processed). Everything runs with the working directory outside the
repository and without ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("bridge", "harness", "pyproject.toml", "README.md")


def _run(cmd: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or _clean_env())
    assert proc.returncode == 0, (f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", **extra}


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A venv with the project's wheel installed; returns its ``bin/python``."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(base / "dist"),
          str(src)], cwd=base, timeout=300)
    (wheel,) = (base / "dist").glob("mcore_compat-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        cwd=base, timeout=60).stdout.strip())
    (purelib / "base-env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
         cwd=base, timeout=300)
    return python


def test_the_tiny_gpt_fixture_ships_in_the_wheel(wheel_venv, tmp_path):
    """The tiny_gpt probe's checkpoint is built from the installed package (it used to import tests.helpers)."""
    script = (
        "import json, sys, harness, bridge\n"
        "from harness.probes.tiny_models import family_variants, write_checkpoint\n"
        "(v, *_) = family_variants('tiny_gpt')\n"
        "out = write_checkpoint(v, sys.argv[1])\n"
        "try:\n"
        "    import tests\n"
        "    has_tests = True\n"
        "except ImportError:\n"
        "    has_tests = False\n"
        "print(json.dumps({'harness': harness.__file__, 'bridge': bridge.__file__, 'has_tests': has_tests,\n"
        "                  'files': sorted(p.name for p in out.iterdir())}))\n"
    )
    proc = _run([str(wheel_venv), "-c", script, str(tmp_path / "ckpt")], cwd=tmp_path, timeout=300)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    venv = wheel_venv.parent.parent
    assert Path(found["harness"]).is_relative_to(venv) and Path(found["bridge"]).is_relative_to(venv)
    assert not found["has_tests"], "the repository's tests/ must not be importable in the wheel's venv"
    assert found["files"] == ["config.json", "configuration_tiny_gpt.py", "model.safetensors", "modeling_tiny_gpt.py"]


@pytest.mark.slow
def test_the_probe_suite_runs_from_the_installed_wheel(wheel_venv, tmp_path):
    """Every probe of the catalog on the installed megatron-core, from the wheel's ``mcore-compat``."""
    env = _clean_env(MCORE_COMPAT_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "out"
    _run([str(wheel_venv.parent / "mcore-compat"), "sweep", "installed", "--fresh-matrix", "--out", str(out),
          "--no-progress", "--jobs", "2"], cwd=tmp_path, timeout=1800, env=env)
    tests = json.loads((out / "sweep-cpu.json").read_text())["results"]
    statuses = {t["test"]: t["status"] for t in tests}
    assert "family:tiny_gpt" in statuses and len(statuses) > 10
    broken = {t["test"]: t["details"] for t in tests if t["status"] in ("error", "timeout")}
    assert broken == {}
    assert statuses["family:tiny_gpt"] == "passed" and statuses["import"] == "passed"
