"""``mcore-compat run``: an upstream commit against the pinned one, in a throwaway superproject.

Each test builds a tiny superproject whose ``3rdparty/Megatron-LM`` gitlink pins the release
repository's ``core_v0.16.1`` commit (real megatron-core releases, see conftest), then runs the
command over ``file://``. /work/main's own submodule is never touched. What must break is read
from the committed matrix (``matrices/matrix.json``), not written down here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import git
import pytest

from harness.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from harness.matrix import load_matrix
from harness.release_repo import SyntheticCommit, write_history
from harness.versions import SUBMODULE_PATH, project_root, tag_for_version

OK = ("supported", "renamed")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid",
                           "-c", "protocol.file.allow=always", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def make_superproject(root: Path, release_repo: Path, *, pin: str, initialise: bool) -> Path:
    """A checkout with a gitlink at ``pin``; the submodule cloned (detached at ``pin``) if ``initialise``."""
    root.mkdir(parents=True)
    _git(root, "init", "-q", "-b", "main")
    (root / ".gitmodules").write_text(
        f'[submodule "{SUBMODULE_PATH}"]\n\tpath = {SUBMODULE_PATH}\n\turl = file://{release_repo}\n')
    (root / SUBMODULE_PATH).mkdir(parents=True)
    _git(root, "add", ".gitmodules")
    _git(root, "update-index", "--add", "--cacheinfo", f"160000,{pin},{SUBMODULE_PATH}")
    _git(root, "commit", "-q", "-m", "pin megatron")
    if initialise:
        _git(root, "submodule", "update", "--init", "-q")
    return root


@pytest.fixture()
def sha(release_repo):
    repo = git.Repo(release_repo)
    return lambda tag: repo.commit(tag).hexsha


@pytest.fixture()
def cache(archive_cache, tmp_path) -> list[str]:
    """A private cache root holding the 0.16.1 archive (the pinned release)."""
    root = tmp_path / "cache"
    shutil.copytree(archive_cache / "pypi" / "0.16.1", root / "pypi" / "0.16.1")
    return ["--cache-dir", str(root)]


def run(project: Path, release_repo: Path, commit: str, out: Path, cache: list[str], *extra: str) -> int:
    return main(["run", "--mcore-repo", f"file://{release_repo}", "--mcore-commit", commit, "--suite", "static",
                 "--project", str(project), "--out", str(out), "--no-progress", *cache, *extra])


def committed_breaks(pinned: str, target: str) -> dict[str, str]:
    """Families the committed matrix shows supported at ``pinned`` and not at ``target`` -> details."""
    matrix = load_matrix(project_root() / "matrices" / "matrix.json")
    out = {}
    for row in matrix.rows:
        before, after = matrix.cell(row["name"], f"pypi:{pinned}"), matrix.cell(row["name"], f"pypi:{target}")
        if row["kind"] == "family" and before["status"] in OK and after["status"] not in OK:
            out[row["name"]] = after["details"]
    return out


def state(project: Path) -> tuple[str, str, str]:
    """(superproject HEAD, superproject status, submodule HEAD or branch)."""
    sub = project / SUBMODULE_PATH
    if (sub / ".git").exists():
        branch = subprocess.run(["git", "symbolic-ref", "-q", "--short", "HEAD"], cwd=sub, capture_output=True,
                                text=True).stdout.strip()
        sub_head = branch or _git(sub, "rev-parse", "HEAD")
    else:
        sub_head = "absent"
    return _git(project, "rev-parse", "HEAD"), _git(project, "status", "--porcelain"), sub_head


def test_nothing_breaks_exit_0_submodule_restored_to_its_branch(tmp_path, release_repo, sha, cache, capsys):
    assert committed_breaks("0.16.1", "0.17.0") == {}
    project = make_superproject(tmp_path / "super", release_repo, pin=sha("core_v0.16.1"), initialise=True)
    _git(project / SUBMODULE_PATH, "checkout", "-q", "-b", "dev")
    before = state(project)
    out = tmp_path / "out"
    assert run(project, release_repo, sha("core_v0.17.0"), out, cache) == EXIT_OK
    stdout, stderr = capsys.readouterr()
    assert "no family that works at the pinned commit broke" in stdout
    assert {p.name for p in out.iterdir()} == {"matrix.json", "matrix.md", "matrix.html", "features.md",
                                               "summary.md", "run.json"}
    report = json.loads((out / "run.json").read_text())
    assert report["families_broken"] == []
    assert report["baseline"]["commit"] == sha("core_v0.16.1") and report["target"]["version"] == "0.17.0"
    assert (out / "summary.md").read_text() in stdout
    matrix = load_matrix(out / "matrix.json")
    assert [r["spec"] for r in matrix.revisions] == [f"git:{sha('core_v0.16.1')}", f"git:{sha('core_v0.17.0')}"]
    assert state(project) == before == (before[0], "", "dev")  # nothing staged, committed or left moved
    assert "restored (on branch dev" in stderr


def test_a_supported_family_breaks_exit_1_names_family_check_and_reason(tmp_path, release_repo, sha, cache, capsys):
    expected = committed_breaks("0.16.1", "0.10.0")
    assert expected, "the committed matrix should show families that 0.10.0 lacks"
    project = make_superproject(tmp_path / "super", release_repo, pin=sha("core_v0.16.1"), initialise=False)
    before = state(project)
    out = tmp_path / "out"
    assert run(project, release_repo, "core_v0.10.0", out, cache) == EXIT_FAILURE
    stdout, stderr = capsys.readouterr()
    report = json.loads((out / "run.json").read_text())
    assert report["families_broken"] == sorted(expected)
    family_breaks = {b["row"]: b for b in report["breaks"] if b["kind"] == "family"}
    assert set(family_breaks) == set(expected)
    for family, details in expected.items():
        assert family_breaks[family]["check"] == "static"
        assert family_breaks[family]["reason"] == details
        target = family_breaks[family]["target"]  # missing, or partial (llama: only rope scaling lacks at 0.10.0)
        assert target in ("missing", "partial")
        assert f"- **{family}**, static: supported -> {target}: {details}" in stdout
    assert state(project) == before  # the clone made for the run is gone again
    assert not any((project / SUBMODULE_PATH).iterdir())
    assert "clone made for this run was removed" in stderr


def test_pinned_commit_missing_from_the_repo_compares_with_its_release(tmp_path, release_repo, sha, cache, capsys):
    upstream = tag_for_version("0.16.1").commit  # the real upstream SHA; the release repo lacks it
    project = make_superproject(tmp_path / "super", release_repo, pin=upstream, initialise=False)
    out = tmp_path / "out"
    assert run(project, release_repo, "core_v0.17.0", out, cache) == EXIT_OK
    report = json.loads((out / "run.json").read_text())
    assert report["baseline"]["spec"] == "pypi:0.16.1"
    assert any("not in" in n and "pypi:0.16.1" in n for n in report["notes"])
    assert "compared with the release it is tagged as" in capsys.readouterr().out


def test_keep_submodule_leaves_the_target_checked_out_unstaged(tmp_path, release_repo, sha, cache, capsys):
    project = make_superproject(tmp_path / "super", release_repo, pin=sha("core_v0.16.1"), initialise=True)
    head = state(project)[0]
    assert run(project, release_repo, "core_v0.17.0", tmp_path / "out", cache, "--keep-submodule") == EXIT_OK
    assert _git(project / SUBMODULE_PATH, "rev-parse", "HEAD") == sha("core_v0.17.0")
    assert _git(project, "rev-parse", "HEAD") == head
    assert _git(project, "diff", "--cached", "--name-only") == ""  # the moved gitlink is not staged
    assert _git(project, "status", "--porcelain") == f"M {SUBMODULE_PATH}"
    assert f"undo with `git -C {SUBMODULE_PATH} checkout {sha('core_v0.16.1')}`" in capsys.readouterr().err


@pytest.mark.parametrize("repo_arg, commit, message", [
    ("REPO", "core_v0.16.9", "closest refs: core_v0.16.1"),
    ("REPO", "0123456789abcdef0123456789abcdef01234567", "closest refs: core_v0.17.0"),
    ("file:///nonexistent/megatron.git", "core_v0.17.0", "is unreachable"),
    ("/nonexistent/megatron", "core_v0.17.0", "no such directory or URL"),
])
def test_usage_errors_exit_2_and_change_nothing(tmp_path, release_repo, sha, cache, capsys, repo_arg, commit, message):
    project = make_superproject(tmp_path / "super", release_repo, pin=sha("core_v0.16.1"), initialise=True)
    before = state(project)
    source = f"file://{release_repo}" if repo_arg == "REPO" else repo_arg
    code = main(["run", "--mcore-repo", source, "--mcore-commit", commit, "--suite", "static", "--project",
                 str(project), "--out", str(tmp_path / "out"), "--no-progress", *cache])
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert state(project) == before
    assert not (tmp_path / "out").exists()


def test_dirty_submodule_is_refused_before_anything_moves(tmp_path, release_repo, sha, cache, capsys):
    project = make_superproject(tmp_path / "super", release_repo, pin=sha("core_v0.16.1"), initialise=True)
    edited = project / SUBMODULE_PATH / "megatron" / "core" / "package_info.py"
    edited.write_text(edited.read_text() + "# local edit\n")
    assert run(project, release_repo, "core_v0.17.0", tmp_path / "out", cache) == EXIT_USAGE
    assert "megatron/core/package_info.py" in capsys.readouterr().err
    assert _git(project / SUBMODULE_PATH, "rev-parse", "HEAD") == sha("core_v0.16.1")
    assert edited.read_text().endswith("# local edit\n")


@pytest.mark.slow
def test_dynamic_suite_catches_a_commit_that_breaks_only_at_import(tmp_path, release_repo, sha, capsys):
    """A commit whose sources still read fine statically but whose `import megatron.core` raises."""
    upstream = tmp_path / "upstream"
    _git(tmp_path, "clone", "-q", str(release_repo), str(upstream))
    init = "megatron/core/__init__.py"
    broken = _git(upstream, "show", f"core_v0.17.0:{init}") + "\nraise ImportError('upstream broke megatron.core')\n"
    write_history(upstream, [SyntheticCommit("break the import", {init: broken})], branch="main")
    target = _git(upstream, "rev-parse", "main")
    project = make_superproject(tmp_path / "super", release_repo, pin=sha("core_v0.16.1"), initialise=False)
    out = tmp_path / "out"
    code = main(["run", "--mcore-repo", str(upstream), "--mcore-commit", target, "--suite", "all",
                 "--tests", "import", "--project", str(project), "--out", str(out), "--no-progress"])
    assert code == EXIT_FAILURE
    report = json.loads((out / "run.json").read_text())
    families = [r["name"] for r in load_matrix(out / "matrix.json").rows if r["kind"] == "family"]
    assert report["families_broken"] == sorted(families)
    assert not [b for b in report["breaks"] if b["check"] == "static"]  # the sources still scan fine
    for b in (b for b in report["breaks"] if b["kind"] == "family"):
        assert b["check"] == "dynamic:import" and "upstream broke megatron.core" in b["reason"]
    assert "dynamic:import: passed -> " in capsys.readouterr().out
    assert not any((project / SUBMODULE_PATH).iterdir())


def test_baseline_option_replaces_the_pinned_commit(tmp_path, release_repo, sha, cache, capsys):
    expected = committed_breaks("0.17.0", "0.13.0")
    project = make_superproject(tmp_path / "super", release_repo, pin=sha("core_v0.16.1"), initialise=True)
    out = tmp_path / "out"
    code = run(project, release_repo, "core_v0.13.0", out, cache, "--baseline", "git:core_v0.17.0")
    assert code == (EXIT_FAILURE if expected else EXIT_OK)
    report = json.loads((out / "run.json").read_text())
    assert report["baseline"]["commit"] == sha("core_v0.17.0") and report["families_broken"] == sorted(expected)
    assert "- baseline: `git:core_v0.17.0` (megatron-core 0.17.0) (--baseline)" in capsys.readouterr().out


def test_the_dynamic_suite_runs_the_default_single_process_probes_only():
    from harness.commands.run import LEFT_OUT, default_probes
    from harness.probes.catalog import TESTS, family_names

    names = default_probes(TESTS)
    assert {"import", "features", "recipes"} <= set(names)
    assert {f"family:{f}" for f in family_names()} <= set(names)
    left = {t.name for t in TESTS} - set(names)
    assert left == {t.name for t in TESTS if not t.default or t.multiprocess} | set(LEFT_OUT)
    assert not [n for n in names if n.startswith("ckpt_compat:")]  # hours of CPU: only when named with --tests
