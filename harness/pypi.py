"""Released megatron-core archives, fetched with pip and cached (nothing is installed).

``pip download --no-deps --ignore-requires-python megatron-core==X`` gets the wheel that
fits this interpreter, else the sdist. Some old sdists cannot even produce metadata (0.4.0's
setup.py reads a file its sdist lacks), so when that fails we ask pip for any binary wheel
of a few common CPython versions and platforms: for reading sources any wheel will do.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from harness.cache import file_lock
from harness.errors import SourceError

__all__ = ["PACKAGE", "archive_path", "fetch_release", "fetch_releases"]

log = logging.getLogger("harness.pypi")

PACKAGE = "megatron-core"
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tgz")
_FALLBACK_PYTHONS = ("3.12", "3.10", "3.11", "3.13", "3.9", "3.8")
_FALLBACK_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64", "any")


def _archive_dir(cache_dir: Path, version: str) -> Path:
    return cache_dir / "pypi" / version


def archive_path(version: str, cache_dir: Path) -> Path | None:
    """The cached archive of ``version``, or None."""
    folder = _archive_dir(cache_dir, version)
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.iterdir() if p.name.endswith(_ARCHIVE_SUFFIXES))
    return found[0] if found else None


def _pip(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", *args]
    env = dict(os.environ, PIP_NO_INPUT="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _tail(text: str, lines: int = 6) -> str:
    keep = [ln for ln in text.strip().splitlines() if "is ignored: it is neither" not in ln]
    return "\n".join(keep[-lines:])


def fetch_release(version: str, cache_dir: Path, *, timeout: float = 300.0) -> Path:
    """Download (once) the archive of ``megatron-core==version``; return its cached path.

    Raises:
        SourceError: pip could not fetch any archive of that version.
    """
    cached = archive_path(version, cache_dir)
    if cached is not None:
        return cached
    folder = _archive_dir(cache_dir, version)
    with file_lock(cache_dir / "locks" / f"pypi-{version}.lock"):
        cached = archive_path(version, cache_dir)
        if cached is not None:
            return cached
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".dl-{version}-") as tmp:
            req = f"{PACKAGE}=={version}"
            attempts: list[list[str]] = [["--ignore-requires-python", req, "-d", tmp]]
            for py in _FALLBACK_PYTHONS:
                plat = [a for p in _FALLBACK_PLATFORMS for a in ("--platform", p)]
                attempts.append(["--only-binary=:all:", "--python-version", py, *plat, req, "-d", tmp])
            errors: list[str] = []
            for args in attempts:
                try:
                    proc = _pip(args, timeout)
                except subprocess.TimeoutExpired:
                    errors.append(f"pip timed out after {timeout:.0f}s")
                    break
                got = [p for p in Path(tmp).iterdir() if p.name.endswith(_ARCHIVE_SUFFIXES)]
                if proc.returncode == 0 and got:
                    folder.mkdir(exist_ok=True)
                    dest = folder / got[0].name
                    shutil.move(str(got[0]), dest)
                    log.info("downloaded %s", dest.name)
                    return dest
                errors.append(_tail(proc.stderr or proc.stdout))
                if "No matching distribution" in (proc.stderr or "") and len(errors) == 1:
                    # the version does not exist at all: no wheel fallback will help
                    break
        raise SourceError(
            f"could not download {PACKAGE}=={version} with pip (expected a wheel or sdist on the "
            f"package index); pip said:\n{errors[0]}\nCheck network access to the index, or scan "
            f"an unpacked tree with path:DIR instead."
        )


def fetch_releases(
    versions: Iterable[str],
    cache_dir: Path,
    *,
    jobs: int = 4,
    on_done: Callable[[str, Path | None, Exception | None], None] | None = None,
) -> dict[str, Path | SourceError]:
    """Fetch several releases in parallel threads; failures are returned, not raised."""
    todo = list(dict.fromkeys(versions))
    results: dict[str, Path | SourceError] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(fetch_release, v, cache_dir): v for v in todo}
        for fut in as_completed(futures):
            version = futures[fut]
            try:
                results[version] = fut.result()
                if on_done:
                    on_done(version, results[version], None)
            except SourceError as exc:
                results[version] = exc
                if on_done:
                    on_done(version, None, exc)
    return results
