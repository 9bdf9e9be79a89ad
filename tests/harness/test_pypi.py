"""harness.pypi: archives are downloaded once and then read from the cache."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from harness.errors import SourceError
from harness.pypi import archive_path, fetch_release


def test_cached_archive_is_not_downloaded_again(archive_cache, tmp_path, monkeypatch):
    shutil.copytree(archive_cache / "pypi" / "0.10.0", tmp_path / "pypi" / "0.10.0")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run for a cached archive")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert fetch_release("0.10.0", tmp_path) == archive_path("0.10.0", tmp_path)


def test_download_into_an_empty_cache(tmp_path):
    path = fetch_release("0.1.0", tmp_path)  # the smallest release (44 kB)
    assert path.name.startswith("megatron_core-0.1.0") and path.parent == tmp_path / "pypi" / "0.1.0"


def test_version_that_does_not_exist(tmp_path):
    with pytest.raises(SourceError, match="could not download megatron-core==0.0.42"):
        fetch_release("0.0.42", tmp_path)
