"""Upstream main as a revision: `matrix --include-main`, and `run` against a main whose newest commit is a
later release with a field renamed to a name no compat layer knows (the run fails for that reason only)."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from harness.cli import EXIT_FAILURE, EXIT_OK, main
from harness.release_repo import SyntheticCommit, release_commits, write_history

TC = "megatron/core/transformer/transformer_config.py"
BROKEN_FROM, BROKEN_TO = "num_query_groups", "kv_head_groups"


@pytest.fixture(scope="module")
def upstream(archive_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """core_v0.16.1, core_v0.17.0, then main: 0.17.0 with TransformerConfig.num_query_groups renamed (and retyped,
    so that no rename is detected: nothing in the bridge translates it)."""
    commits = release_commits(["0.16.1", "0.17.0"], archive_cache)
    newest = commits[-1]
    text = newest.files[TC].decode()
    declaration = f"    {BROKEN_FROM}: Optional[int] = "
    assert text.count(declaration) == 1, "0.17.0 declares num_query_groups once"
    broken = text.replace(declaration, f"    {BROKEN_TO}: Optional[str] = ")
    head = SyntheticCommit(f"main: rename {BROKEN_FROM} to {BROKEN_TO}", {**newest.files, TC: broken},
                           timestamp=newest.timestamp + 86_400, replace_all=True)
    return write_history(tmp_path_factory.mktemp("upstream") / "repo", [*commits, head])


def test_revisions_lists_releases_and_main_as_json(upstream, capsys):
    from harness.versions import DYNAMIC_RELEASES, RELEASES

    assert main(["revisions", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == [f"pypi:{v}" for v in RELEASES]
    assert main(["revisions", "--json", "--dynamic", "--include-main", "--repo", str(upstream)]) == EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    sha = git.Repo(upstream).commit("main").hexsha
    assert listed == [*(f"pypi:{v}" for v in DYNAMIC_RELEASES), f"git:{sha}"]


def test_include_main_adds_a_labelled_column_and_what_changed(upstream, tmp_path, capsys):
    out = tmp_path / "m"
    code = main(["matrix", "pypi:0.16.1", "pypi:0.17.0", "--include-main", "--repo", str(upstream), "--out", str(out),
                 "--static-only", "--no-field-history", "--no-families", "--no-progress"])
    assert code == EXIT_OK
    sha = git.Repo(upstream).commit("main").hexsha
    data = json.loads((out / "matrix.json").read_text())
    revs = data["revisions"]
    assert [r["spec"] for r in revs] == ["pypi:0.16.1", "pypi:0.17.0", f"git:{sha}"]  # next to the releases
    changes = revs[-1]["changes_since_release"]
    assert revs[-1]["label"] == f"main@{sha[:7]}"
    assert changes["since"] == "pypi:0.17.0"
    assert changes["fields_added"] == [BROKEN_TO] and changes["fields_removed"] == [BROKEN_FROM]
    assert {"row": "gqa", "kind": "feature", "from": "supported", "to": "missing",
            "details": f"missing 1: field:{BROKEN_FROM}"} in changes["rows"]
    md = (out / "matrix.md").read_text()
    assert f"| 0.16.1 | 0.17.0 | main@{sha[:7]} |" in md
    assert f"## main@{sha[:7]} vs 0.17.0" in md
    assert f"- TransformerConfig fields removed (1): `{BROKEN_FROM}`" in md
    assert "gqa (feature): supported -> missing" in md
    page = (out / "matrix.html").read_text()
    assert f">main@{sha[:7]}</th>" in page and 'data-change="TransformerConfig fields added"' in page


def test_run_against_main_fails_only_for_the_upstream_rename(upstream, tmp_path, capsys):
    """Every break names the renamed field; a family that does not use it does not break."""
    from tests.harness.test_run import make_superproject

    pin = git.Repo(upstream).commit("core_v0.16.1").hexsha
    project = make_superproject(tmp_path / "super", upstream, pin=pin, initialise=False)
    out = tmp_path / "out"
    code = main(["run", "--mcore-repo", f"file://{upstream}", "--mcore-commit", "main", "--suite", "static",
                 "--project", str(project), "--out", str(out), "--no-progress"])
    assert code == EXIT_FAILURE
    report = json.loads((out / "run.json").read_text())
    breaks = report["breaks"]
    assert breaks, "the rename must break the families that use the field"
    assert all(BROKEN_FROM in b["reason"] for b in breaks), [b["reason"] for b in breaks]
    broken = {b["row"] for b in breaks}
    assert {"llama", "gqa"} <= broken
    summary = (out / "summary.md").read_text()
    assert BROKEN_FROM in summary


def test_main_ref_pins_the_commit_ci_resolved_first(upstream, tmp_path):
    """CI's publish job passes the commit its sweep jobs used: the column is that commit, labelled main."""
    sha = git.Repo(upstream).commit("core_v0.17.0").hexsha  # as if main had moved on since
    out = tmp_path / "m"
    assert main(["matrix", "pypi:0.17.0", "--include-main", "--main-ref", sha, "--repo", str(upstream), "--out",
                 str(out), "--static-only", "--no-field-history", "--no-families", "--no-progress"]) == EXIT_OK
    revs = json.loads((out / "matrix.json").read_text())["revisions"]
    assert revs[-1]["spec"] == f"git:{sha}" and revs[-1]["label"] == f"main@{sha[:7]}"
    assert revs[-1]["changes_since_release"]["fields_added"] == []  # the same tree as the release
