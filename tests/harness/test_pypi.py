"""harness.pypi: archives are downloaded once and then read from the cache; a version the index lacks and
an index that cannot be reached fail differently."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from harness.errors import IndexUnreachableError, ReleaseNotFoundError, SourceError
from harness.pypi import archive_path, fetch_release, pip_failure

# What pip 23.2 prints for `pip download megatron-core==0.0.42` (index answers; list shortened), and
# against an index it cannot reach (with and without a retry).
NOT_ON_INDEX = (
    "ERROR: Could not find a version that satisfies the requirement megatron-core==0.0.42 (from versions: 0.1.0, "
    "0.2.0, 0.3.0, 0.4.0, 0.11.0rc0, 0.11.0, 0.16.0rc0.dev100085, 0.16.0, 0.16.1)\n"
    "ERROR: No matching distribution found for megatron-core==0.0.42\n"
)
UNREACHABLE = (
    "Looking in indexes: http://127.0.0.1:9/simple\n"
    "ERROR: Could not find a version that satisfies the requirement megatron-core==0.10.0 (from versions: none)\n"
    "ERROR: No matching distribution found for megatron-core==0.10.0\n"
)
UNREACHABLE_RETRIED = (
    "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection "
    "broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPConnection object at 0x7f>: Failed to "
    "establish a new connection: [Errno 111] Connection refused')': /simple/megatron-core/\n"
)
BUILD_FAILED = (
    "Collecting megatron-core==0.4.0\n  Downloading megatron_core-0.4.0.tar.gz (147 kB)\n"
    "  error: subprocess-exited-with-error\n  FileNotFoundError: [Errno 2] No such file or directory: 'README.md'\n"
    "error: metadata-generation-failed\n"
)


@pytest.fixture
def unreachable_index(monkeypatch):
    """pip's index is a closed local port, its configuration files and find-links are ignored."""
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")


def test_a_version_the_index_lacks_names_the_nearest_releases():
    error = pip_failure("0.0.42", NOT_ON_INDEX)
    assert type(error) is ReleaseNotFoundError
    assert "megatron-core==0.0.42 is not on the package index" in str(error)
    assert "lists 9 versions" in str(error) and "nearest releases being 0.1.0, 0.2.0, 0.3.0;" in str(error)
    between = pip_failure("0.12.0", NOT_ON_INDEX)
    assert "nearest releases being 0.3.0, 0.4.0, 0.11.0, 0.16.0, 0.16.1;" in str(between)  # no rc / dev


@pytest.mark.parametrize("output", [UNREACHABLE, UNREACHABLE_RETRIED, UNREACHABLE_RETRIED + UNREACHABLE])
def test_an_index_that_lists_nothing_or_refuses_connections_is_unreachable(output):
    error = pip_failure("0.10.0", output)
    assert type(error) is IndexUnreachableError
    assert "the package index" in str(error) and "was not reached" in str(error) and "PIP_INDEX_URL" in str(error)


def test_other_pip_failures_keep_pips_words():
    error = pip_failure("0.4.0", BUILD_FAILED)
    assert type(error) is SourceError
    assert "could not download megatron-core==0.4.0" in str(error) and "metadata-generation-failed" in str(error)


def test_unreachable_index_is_told_apart_from_a_missing_version(tmp_path, unreachable_index):
    with pytest.raises(IndexUnreachableError, match="http://127.0.0.1:9/simple"):
        fetch_release("0.10.0", tmp_path)
    assert archive_path("0.10.0", tmp_path) is None


def test_cached_archive_is_not_downloaded_again(archive_cache, tmp_path, monkeypatch):
    shutil.copytree(archive_cache / "pypi" / "0.10.0", tmp_path / "pypi" / "0.10.0")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run for a cached archive")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert fetch_release("0.10.0", tmp_path) == archive_path("0.10.0", tmp_path)


@pytest.mark.network
def test_download_into_an_empty_cache(tmp_path):
    path = fetch_release("0.1.0", tmp_path)  # the smallest release (44 kB)
    assert path.name.startswith("megatron_core-0.1.0") and path.parent == tmp_path / "pypi" / "0.1.0"


@pytest.mark.network
def test_version_that_does_not_exist(tmp_path):
    with pytest.raises(ReleaseNotFoundError, match=r"megatron-core==0.0.42 is not on the package index.*0\.1\.0, 0\.2"):
        fetch_release("0.0.42", tmp_path)
