"""harness.release_repo: the release repository and synthetic histories."""

from __future__ import annotations

import git

from harness.release_repo import SyntheticCommit, write_history
from harness.versions import tag_for_version
from tests.harness.conftest import REPO_RELEASES


def test_release_repo_has_one_tagged_commit_per_release(release_repo):
    repo = git.Repo(release_repo)
    commits = list(repo.iter_commits("main", first_parent=True))[::-1]
    assert [c.message.split()[1] for c in commits] == list(REPO_RELEASES)
    for version, commit in zip(REPO_RELEASES, commits):
        assert repo.commit(f"core_v{version}") == commit
        assert commit.committed_datetime.date().isoformat() == tag_for_version(version).date
        top = {item.path for item in commit.tree}
        assert top == {"megatron"}
        assert not any(b.path.endswith(".so") for b in commit.tree.traverse() if b.type == "blob")


def test_write_history_appends_and_deletes(tmp_path):
    repo_dir = write_history(tmp_path / "r", [SyntheticCommit("one", {"a.txt": "1", "b.txt": "2"}, tag="t1")])
    write_history(repo_dir, [SyntheticCommit("two", {"a.txt": None, "c.txt": b"3"})])
    repo = git.Repo(repo_dir)
    assert [c.summary for c in repo.iter_commits("main")] == ["two", "one"]
    assert sorted(b.path for b in repo.head.commit.tree.traverse()) == ["b.txt", "c.txt"]
    assert repo.commit("t1").summary == "one"
