"""harness.history: field history and bisect over real releases and a synthetic history."""

from __future__ import annotations

import git
import pytest

from harness.history import bisect_field, config_commits, field_history, first_release_containing
from harness.introspect import Introspector


@pytest.fixture()
def fresh(archive_cache, tmp_path):
    return Introspector(archive_cache, facts_dir=tmp_path)


def test_history_of_synthetic_repo(synthetic_repo, fresh):
    entries = field_history(git.Repo(synthetic_repo), fresh)
    subjects = [e.subject for e in entries]
    assert subjects == ["base", "add rope", "rename ffn", "default", "broken"]  # README commit skipped
    base, rope, rename, default, broken = entries
    assert base.added == ("tensor_model_parallel_size", "sequence_parallel", "num_layers", "hidden_size", "ffn_size")
    assert base.tags == ("core_v0.8.0",)
    assert rope.added == ("use_rope",) and not rope.removed
    assert (rename.added, rename.removed) == (("ffn_hidden_size",), ("ffn_size",))
    assert default.default_changed == {"use_rope": {"from": "False", "to": "True"}}
    assert broken.error and "transformer_config.py" in broken.error


def test_history_range(synthetic_repo, fresh):
    repo = git.Repo(synthetic_repo)
    entries = field_history(repo, fresh, start="core_v0.9.0", end="broken~1")
    assert [e.subject for e in entries] == ["default"]


def test_history_of_releases(release_repo, fresh):
    entries = field_history(git.Repo(release_repo), fresh)
    assert [e.tags for e in entries] == [(f"core_v{v}",) for v in ("0.10.0", "0.11.0", "0.13.0", "0.16.1", "0.17.0")]
    assert "first_pipeline_num_layers" in entries[1].removed
    assert "num_layers_in_first_pipeline_stage" in entries[1].added
    assert "moe_extended_tp" in entries[4].removed


@pytest.mark.parametrize(("name", "first", "removed"), [
    ("attention_backend", "core_v0.11.0", None),
    ("pipeline_model_parallel_layout", "core_v0.13.0", None),
    ("moe_extended_tp", "core_v0.10.0", "core_v0.17.0"),
    ("first_pipeline_num_layers", "core_v0.10.0", "core_v0.11.0"),
])
def test_bisect_finds_known_first_release(release_repo, introspector, name, first, removed):
    result = bisect_field(git.Repo(release_repo), name, introspector)
    assert result.first["tags"] == [first] and result.first["first_release"] == first
    assert (result.removed["tags"] if result.removed else None) == ([removed] if removed else None)
    assert result.commits_read == 5


def test_bisect_reads_each_commit_once_then_only_the_cache(synthetic_repo, fresh):
    repo = git.Repo(synthetic_repo)
    first = bisect_field(repo, "use_rope", fresh)
    assert first.first["subject"] == "add rope" and first.removed is None
    misses = fresh.cache.stats.misses
    again = bisect_field(repo, "ffn_size", fresh)
    assert fresh.cache.stats.misses == misses  # every blob was already parsed
    assert again.removed["subject"] == "rename ffn"
    assert bisect_field(repo, "never_there", fresh).first is None


def test_first_release_containing(synthetic_repo):
    repo = git.Repo(synthetic_repo)
    shas = config_commits(repo)
    assert first_release_containing(repo, shas[1]) == "core_v0.9.0"  # "add rope" ships in 0.9.0
    assert first_release_containing(repo, shas[-1]) is None
