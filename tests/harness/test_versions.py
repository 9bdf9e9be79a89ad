"""harness.versions: the one list of revisions and the upstream tag table."""

from __future__ import annotations

from harness import versions


def test_releases_are_sorted_unique_and_complete():
    assert list(versions.RELEASES) == sorted(set(versions.RELEASES), key=versions.version_key)
    assert versions.RELEASES[0] == "0.1.0" and versions.RELEASES[-1] == "0.19.2"
    assert len(versions.RELEASES) == 32


def test_dynamic_releases_start_at_0_8():
    assert versions.DYNAMIC_RELEASES[0] == "0.8.0"
    assert set(versions.DYNAMIC_RELEASES) <= set(versions.RELEASES)
    assert all(versions.version_key(v) >= (0, 8, 0) for v in versions.DYNAMIC_RELEASES)


def test_tag_table_maps_versions_and_commits():
    tags = versions.release_tags()
    assert all(t.version in versions.RELEASES for t in tags)
    assert versions.tag_for_version("0.13.0").commit.startswith("c550cf6c")
    assert versions.version_for_commit("c550cf6c41c3") == "0.13.0"
    assert versions.version_for_commit("c55") is None  # too short to be trusted
    assert versions.version_for_tag("core_v0.12.3") == "0.12.3" and versions.version_for_tag("main") is None


def test_default_revisions():
    specs = versions.default_revisions()
    assert specs[: len(versions.RELEASES)] == [f"pypi:{v}" for v in versions.RELEASES]
    sha = versions.pinned_submodule_sha()
    submodule_ready = (versions.submodule_repo_path() / ".git").exists()
    assert (f"git:{sha}" in specs) == bool(sha and submodule_ready)


def test_version_key_orders_numerically():
    assert versions.version_key("0.10.0") > versions.version_key("0.9.0")
    assert versions.version_key("0.16.0rc0") == (0, 16, 0)
