"""Released megatron-core archives, fetched with pip and cached (nothing is installed).

``pip download --no-deps --ignore-requires-python megatron-core==X`` gets the wheel that
fits this interpreter, else the sdist. Some old sdists cannot even produce metadata (0.4.0's
setup.py reads a file its sdist lacks), so when that fails we ask pip for any binary wheel
of a few common CPython versions and platforms: for reading sources any wheel will do.

pip exits 1 alike for a version the index lacks and for an index it cannot reach, so
:func:`pip_failure` reads its output: ``(from versions: 0.1.0, ...)`` means the index answered
(:class:`~harness.errors.ReleaseNotFoundError`, naming the nearest releases it has);
``(from versions: none)`` or a connection error means it did not, since megatron-core has releases
(:class:`~harness.errors.IndexUnreachableError`). Anything else stays a :class:`~harness.errors.SourceError`
with pip's own words.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from harness.cache import file_lock
from packaging.version import InvalidVersion, Version

from harness.errors import IndexUnreachableError, ReleaseNotFoundError, SourceError

__all__ = ["PACKAGE", "archive_path", "fetch_release", "fetch_releases", "pip_failure"]

log = logging.getLogger("harness.pypi")

PACKAGE = "megatron-core"
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tgz")
_FALLBACK_PYTHONS = ("3.12", "3.10", "3.11", "3.13", "3.9", "3.8")
_FALLBACK_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64", "any")
_FROM_VERSIONS = re.compile(r"\(from versions: ([^)]*)\)")
_CONNECTION_ERRORS = ("NewConnectionError", "Failed to establish a new connection", "connection error",
                      "Max retries exceeded", "Name or service not known", "Temporary failure in name resolution",
                      "ProxyError", "ConnectTimeoutError", "Connection refused", "Network is unreachable")
_NEAREST = 3


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


def _nearest(version: str, listed: list[str]) -> list[str]:
    """Up to :data:`_NEAREST` final releases on each side of ``version`` (all of them when it is unreadable)."""
    releases = []
    for text in listed:
        try:
            parsed = Version(text)
        except InvalidVersion:
            continue
        if not parsed.is_prerelease and not parsed.is_devrelease:
            releases.append(parsed)
    releases.sort()
    try:
        wanted = Version(version)
    except InvalidVersion:
        return [str(v) for v in releases]
    below = [v for v in releases if v < wanted][-_NEAREST:]
    above = [v for v in releases if v > wanted][:_NEAREST]
    return [str(v) for v in below + above]


def pip_failure(version: str, output: str) -> SourceError:
    """The error for a failed ``pip download megatron-core==version`` whose stdout + stderr is ``output``.

    ``ReleaseNotFoundError`` when pip lists the versions the index has, ``IndexUnreachableError``
    when it lists none or reports a connection error, else a plain ``SourceError`` with pip's output.
    """
    req = f"{PACKAGE}=={version}"
    listed = _FROM_VERSIONS.search(output)
    versions = [v.strip() for v in listed.group(1).split(",") if v.strip() not in ("", "none")] if listed else []
    indexes = re.search(r"Looking in indexes: (.+)", output)
    where = f" ({indexes.group(1).strip()})" if indexes else ""
    if versions:
        return ReleaseNotFoundError(
            f"{req} is not on the package index{where}: it lists {len(versions)} versions of {PACKAGE}, "
            f"the nearest releases being {', '.join(_nearest(version, versions))}; expected one of those, "
            "or scan an unpacked tree with path:DIR"
        )
    if listed or any(marker in output for marker in _CONNECTION_ERRORS):
        return IndexUnreachableError(
            f"could not download {req}: the package index{where} was not reached (pip found no version of "
            f"{PACKAGE} at all, and it has releases); check network access and PIP_INDEX_URL / pip's "
            "configuration (PIP_NO_INDEX), or scan an unpacked tree with path:DIR"
        )
    return SourceError(
        f"could not download {req} with pip (expected a wheel or sdist on the package index); pip said:\n"
        f"{_tail(output)}\nCheck network access to the index, or scan an unpacked tree with path:DIR instead."
    )


def fetch_release(version: str, cache_dir: Path, *, timeout: float = 300.0) -> Path:
    """Download (once) the archive of ``megatron-core==version``; return its cached path.

    Raises:
        ReleaseNotFoundError: the index has no such version.
        IndexUnreachableError: the index could not be reached.
        SourceError: pip could not fetch any archive of that version for another reason.
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
            first: SourceError | None = None
            for args in attempts:
                try:
                    proc = _pip(args, timeout)
                except subprocess.TimeoutExpired:
                    first = first or SourceError(
                        f"could not download {req}: pip timed out after {timeout:.0f}s; check network access "
                        "to the package index, or scan an unpacked tree with path:DIR")
                    break
                got = [p for p in Path(tmp).iterdir() if p.name.endswith(_ARCHIVE_SUFFIXES)]
                if proc.returncode == 0 and got:
                    folder.mkdir(exist_ok=True)
                    dest = folder / got[0].name
                    shutil.move(str(got[0]), dest)
                    log.info("downloaded %s", dest.name)
                    return dest
                if first is None:
                    first = pip_failure(version, f"{proc.stdout}\n{proc.stderr}")
                    if isinstance(first, (ReleaseNotFoundError, IndexUnreachableError)):
                        break  # no such version, or no index: no wheel fallback will help
        assert first is not None
        raise first


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
