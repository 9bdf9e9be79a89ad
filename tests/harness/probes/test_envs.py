"""harness.probes.envs: per-revision environments (pip --target once, atomically; git worktrees; path and
installed trees), identities, the declared Python range, and failures reported instead of raised."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from harness.errors import ProbeError, RevisionError
from harness.probes.envs import prepare_revision
from harness.probes.prepared import EXTRA_REQUIREMENTS, WHEELS_ENV, release_archive, requires_python_of
from harness.pypi import fetch_release
from harness.versions import project_root
from tests.harness.probes.conftest import make_revision


def make_wheel(cache_dir: Path, version: str, *, requires_python: str | None = None) -> Path:
    """A real (tiny) megatron-core wheel in the cache's pypi/ folder, as fetch_release leaves one."""
    folder = cache_dir / "pypi" / version
    folder.mkdir(parents=True)
    path = folder / f"megatron_core-{version}-py3-none-any.whl"
    info = f"megatron_core-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: megatron-core\nVersion: {version}\n"
    if requires_python:
        meta += f"Requires-Python: {requires_python}\n"
    files = {
        "megatron/core/__init__.py": f"__version__ = {version!r}\nFAKE = True\n",
        f"{info}/METADATA": meta,
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            zf.writestr(name, text)
    return path


def _import_in_child(env: dict[str, str]) -> str:
    code = "import importlib.metadata as m, megatron.core as c; print(c.__file__, m.version('megatron-core'))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def test_pypi_release_is_installed_once_and_comes_first(tmp_path):
    wheel = make_wheel(tmp_path, "0.17.0", requires_python=">=3.99")
    prepared = prepare_revision("pypi:0.17.0", cache_dir=tmp_path)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert prepared.error is None and not prepared.reused
    assert prepared.identity == f"sha256:{sha}"
    env_dir = Path(prepared.pythonpath[0])
    assert env_dir == tmp_path / "envs" / f"0.17.0-{sha[:8]}" and (env_dir / ".complete").exists()
    assert [p.name for p in env_dir.parent.iterdir()] == [env_dir.name]  # no half-built leftovers
    assert prepared.env["PYTHONPATH"].split(":") == [str(env_dir), str(project_root())]
    assert prepared.requires_python == ">=3.99" and prepared.outside_python_range
    assert any("outside declared Python range (requires >=3.99" in n for n in prepared.notes)
    # the revision shadows the megatron-core installed in the base env
    assert _import_in_child(prepared.env) == f"{env_dir}/megatron/core/__init__.py 0.17.0"

    again = prepare_revision("pypi:0.17.0", cache_dir=tmp_path)
    assert again.reused and again.pythonpath == prepared.pythonpath and again.prepare_s < prepared.prepare_s


def test_concurrent_preparations_build_one_env(tmp_path):
    make_wheel(tmp_path, "0.16.0")
    results = []
    threads = [threading.Thread(target=lambda: results.append(prepare_revision("pypi:0.16.0", cache_dir=tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.reused for r in results) == [False, True]
    assert results[0].pythonpath == results[1].pythonpath and not results[0].outside_python_range
    assert len(list((tmp_path / "envs").iterdir())) == 1


def test_carried_wheels_come_first(tmp_path, monkeypatch):
    carried = make_wheel(tmp_path / "carry", "0.15.0")
    for name in ("megatron_core-0.15.0-cp27-cp27mu-manylinux1_x86_64.whl", "megatron_core-0.15.1-py3-none-any.whl"):
        (carried.parent / name).write_bytes(b"not for this interpreter or version")
    cached = make_wheel(tmp_path / "cache", "0.15.0", requires_python=">=3.99")
    monkeypatch.setenv(WHEELS_ENV, f"{tmp_path / 'empty'}:{carried.parent}")
    assert release_archive("0.15.0", tmp_path / "cache") == carried
    prepared = prepare_revision("pypi:0.15.0", cache_dir=tmp_path / "cache")
    assert prepared.identity == "sha256:" + hashlib.sha256(carried.read_bytes()).hexdigest()
    assert not prepared.outside_python_range  # the carried wheel's metadata, not the cached one's
    monkeypatch.setenv(WHEELS_ENV, str(tmp_path / "empty"))
    assert release_archive("0.15.0", tmp_path / "cache") == cached


def test_a_failed_install_is_reported_and_leaves_nothing(tmp_path):
    folder = tmp_path / "pypi" / "0.9.0"
    folder.mkdir(parents=True)
    (folder / "megatron_core-0.9.0-py3-none-any.whl").write_bytes(b"not a zip file")
    prepared = prepare_revision("pypi:0.9.0", cache_dir=tmp_path)
    assert prepared.error is not None and prepared.error.startswith("prepare failed: pip install --target")
    assert prepared.pythonpath == () and not list((tmp_path / "envs").iterdir())


def test_path_and_installed_revisions(tmp_path):
    root = make_revision(tmp_path / "tree", "X = 1\n")
    prepared = prepare_revision(f"path:{root}", cache_dir=tmp_path / "cache")
    assert prepared.pythonpath == (str(root),) and prepared.identity.startswith("tree:") and prepared.reused
    (root / "megatron" / "core" / "__init__.py").write_text("X = 2\n")
    assert prepare_revision(f"path:{root}", cache_dir=tmp_path / "cache").identity != prepared.identity

    installed = prepare_revision("installed", cache_dir=tmp_path / "cache")
    assert installed.pythonpath == () and installed.env == {"PYTHONPATH": str(project_root())}
    assert installed.identity.startswith("tree:") and installed.version is not None


def test_git_revision_uses_the_cached_worktree(synthetic_repo, tmp_path):
    prepared = prepare_revision("git:core_v0.9.0", repo=str(synthetic_repo), cache_dir=tmp_path)
    root = Path(prepared.pythonpath[0])
    assert (root / "megatron" / "core" / "transformer" / "transformer_config.py").exists()
    assert prepared.identity == f"git:{prepared.commit}" and len(prepared.commit) == 40


def test_usage_errors_raise():
    with pytest.raises(RevisionError):
        prepare_revision("pypi:0.99.0")
    with pytest.raises(ProbeError, match="unknown preparation method"):
        prepare_revision("installed", method="conda")


def test_declared_python_ranges_of_real_archives(archive_cache):
    assert requires_python_of(fetch_release("0.16.1", archive_cache)) == ">=3.10"
    assert requires_python_of(fetch_release("0.17.0", archive_cache)) == ">=3.12"
    setuptools, triton = EXTRA_REQUIREMENTS
    assert setuptools.applies_to("0.8.0") and not setuptools.applies_to("0.9.0") and not setuptools.applies_to(None)
    assert triton.applies_to("0.18.0") and triton.applies_to("0.19.2") and not triton.applies_to("0.17.1")
    assert not setuptools.provided_by_base()  # the base env's setuptools has no pkg_resources any more


@pytest.mark.slow
def test_release_0_8_0_imports_with_its_extra_setuptools(archive_cache):
    prepared = prepare_revision("pypi:0.8.0", cache_dir=archive_cache)
    assert prepared.error is None and len(prepared.pythonpath) == 2
    code = "import pkg_resources, megatron.core.transformer.transformer_config as t; print(t.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=prepared.env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(prepared.pythonpath[0])


@pytest.mark.slow
def test_venv_method_builds_a_separate_interpreter(tmp_path):
    make_wheel(tmp_path, "0.16.0")
    prepared = prepare_revision("pypi:0.16.0", cache_dir=tmp_path, method="venv")
    assert prepared.error is None, prepared.error
    assert prepared.method == "venv" and Path(prepared.python).is_relative_to(tmp_path / "venvs")
    code = "import torch, megatron.core as c; print(c.FAKE, torch.__version__)"
    out = subprocess.run([prepared.python, "-c", code], env=prepared.env, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert out.startswith("True 2.13.0")
