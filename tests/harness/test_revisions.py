"""harness.revisions: the spec notation, resolution, clear errors, worktrees."""

from __future__ import annotations

import pytest

from harness.errors import RevisionError
from harness.revisions import open_source, parse_revision, resolve_revision, worktree_for
from harness.versions import RELEASES


def test_parse_pypi_maps_commit_from_tag_table():
    rev = parse_revision("pypi:0.13.0")
    assert (rev.kind, rev.ref, rev.version) == ("pypi", "0.13.0", "0.13.0")
    assert rev.commit == "c550cf6c41c31cd3ec72e05c25ea0c979f2b6631"
    assert parse_revision("pypi:0.19.2").commit is None  # not in the tag table


@pytest.mark.parametrize("spec", ["0.13.0", "pypi:", "svn:1", "git:", ""])
def test_malformed_specs(spec):
    with pytest.raises(RevisionError, match="expected pypi:X.Y.Z"):
        parse_revision(spec)


def test_unknown_release_names_the_closest():
    with pytest.raises(RevisionError) as err:
        parse_revision("pypi:0.13.7")
    msg = str(err.value)
    assert "0.13.1" in msg and "0.13.0" in msg and "0.13.7" in msg


def test_unknown_git_ref_names_the_closest_tags(release_repo):
    with pytest.raises(RevisionError) as err:
        resolve_revision("git:core_v0.13.5", repo=str(release_repo))
    assert "core_v0.13.0" in str(err.value)


def test_default_repository_not_initialised_suggests_repo(tmp_path):
    with pytest.raises(RevisionError, match="--repo"):
        resolve_revision("git:core_v0.13.0", cache_dir=tmp_path)


def test_repo_that_is_not_a_repository(tmp_path):
    with pytest.raises(RevisionError, match="not a git repository"):
        resolve_revision("git:main", repo=str(tmp_path), cache_dir=tmp_path)


def test_unreachable_url(tmp_path):
    with pytest.raises(RevisionError, match="unreachable"):
        resolve_revision("git:main", repo=f"file://{tmp_path}/nothing-here", cache_dir=tmp_path)


def test_git_resolution_by_tag_branch_and_sha(release_repo):
    by_tag = resolve_revision("git:core_v0.11.0", repo=str(release_repo))
    assert by_tag.version == "0.11.0" and len(by_tag.commit) == 40
    by_sha = resolve_revision(f"git:{by_tag.commit[:10]}", repo=str(release_repo))
    assert by_sha.commit == by_tag.commit and by_sha.version == "0.11.0"  # read from package_info.py
    head = resolve_revision("git:main", repo=str(release_repo))
    assert head.version == "0.17.0"


def test_installed_and_path_are_located_without_import():
    import importlib.metadata

    rev = resolve_revision("installed")
    assert rev.version == importlib.metadata.version("megatron-core")
    root = open_source(rev).root
    again = resolve_revision(f"path:{root}")
    assert again.version == rev.version and again.kind == "path"


def test_path_without_megatron_core(tmp_path):
    with pytest.raises(RevisionError, match="megatron/core"):
        resolve_revision(f"path:{tmp_path}")


def test_worktree_for_git_is_cached_and_detached(release_repo, tmp_path):
    path = worktree_for("git:core_v0.13.0", repo=str(release_repo), cache_dir=tmp_path)
    text = (path / "megatron/core/package_info.py").read_text()
    assert "MINOR = 13" in text
    assert worktree_for("git:core_v0.13.0", repo=str(release_repo), cache_dir=tmp_path) == path


def test_worktree_for_pypi_unpacks_once(archive_cache, tmp_path):
    import shutil

    shutil.copytree(archive_cache / "pypi" / "0.10.0", tmp_path / "pypi" / "0.10.0")
    path = worktree_for("pypi:0.10.0", cache_dir=tmp_path)
    assert (path / "megatron/core/transformer/transformer_config.py").is_file()


def test_every_release_parses():
    assert all(parse_revision(f"pypi:{v}").version == v for v in RELEASES)
