"""Repositories behind ``git:`` revisions: open (or clone) them, resolve refs, add worktrees."""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
import subprocess
from pathlib import Path

import git

from harness.cache import file_lock
from harness.errors import RevisionError
from harness.versions import SUBMODULE_PATH, submodule_repo_path

__all__ = ["closest_refs", "open_repo", "repo_key", "resolve_ref", "worktree"]

log = logging.getLogger("harness.gitrepo")

_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)


def repo_key(repo: str | None) -> str:
    """A short stable name for a repository location (cache folder names)."""
    location = repo or str(submodule_repo_path())
    return hashlib.sha256(location.encode()).hexdigest()[:16]


def _clone(url: str, cache_dir: Path) -> Path:
    dest = cache_dir / "repos" / repo_key(url)
    with file_lock(cache_dir / "locks" / f"repo-{repo_key(url)}.lock"):
        try:
            if (dest / "HEAD").exists():
                git.Repo(dest).git.fetch("--tags", "--prune", "origin", "+refs/heads/*:refs/heads/*")
            else:
                git.Repo.clone_from(url, dest, bare=True)
        except git.GitCommandError as exc:
            raise RevisionError(
                f"repository {url} is unreachable ({exc.stderr.strip() or exc}); expected a git URL "
                f"this machine can fetch, or pass --repo with a local clone"
            ) from exc
    return dest


def open_repo(repo: str | None, cache_dir: Path) -> git.Repo:
    """The repository at ``repo`` (local path or URL; None = the pinned submodule).

    Raises:
        RevisionError: the path is not a git repository, the URL cannot be fetched, or the
            submodule is not initialised.
    """
    if repo is None:
        path = submodule_repo_path()
        if not (path / ".git").exists():
            raise RevisionError(
                f"the default repository {SUBMODULE_PATH} is not initialised (found no {path}/.git); "
                f"run `git submodule update --init {SUBMODULE_PATH}` or pass --repo PATH_OR_URL "
                f"(a local Megatron-LM clone, or a repository built by scripts/build_release_repo.py)"
            )
        location = str(path)
    elif _URL.match(repo):
        location = str(_clone(repo, cache_dir))
    else:
        location = repo
    try:
        return git.Repo(location)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError) as exc:
        raise RevisionError(
            f"--repo {repo or location} is not a git repository (expected a clone of Megatron-LM); "
            f"give the path of a clone or a URL"
        ) from exc


def _ref_names(repo: git.Repo) -> list[str]:
    names = [t.name for t in repo.tags] + [h.name for h in repo.heads]
    try:
        names += [r.remote_head for r in repo.remote().refs]
    except ValueError:
        pass
    return sorted(set(names))


def closest_refs(repo: git.Repo, ref: str, n: int = 5) -> list[str]:
    """Tags and branches whose names look most like ``ref``."""
    return difflib.get_close_matches(ref, _ref_names(repo), n=n, cutoff=0.4)


def resolve_ref(repo: git.Repo, ref: str) -> str:
    """Full commit SHA of ``ref`` (tag, branch, or SHA prefix).

    Raises:
        RevisionError: unknown ref, naming the closest tags and branches.
    """
    try:
        return repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
    except git.GitCommandError:
        close = closest_refs(repo, ref)
        hint = f"closest tags/branches: {', '.join(close)}" if close else "no similar tag or branch"
        raise RevisionError(
            f"unknown git revision {ref!r} in {repo.git_dir}: expected a tag, branch or commit SHA; "
            f"{hint}"
        ) from None


def worktree(repo: git.Repo, sha: str, cache_dir: Path, key: str) -> Path:
    """A detached worktree of ``sha`` (created once, then reused) under the cache."""
    dest = cache_dir / "worktrees" / key / sha
    with file_lock(cache_dir / "locks" / f"worktree-{key}-{sha}.lock"):
        if (dest / ".git").exists():
            try:
                head = subprocess.run(
                    ["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True, check=True
                ).stdout.strip()
                if head == sha:
                    return dest
            except subprocess.CalledProcessError:
                pass
            log.warning("worktree %s is stale; recreating it", dest)
            repo.git.worktree("remove", "--force", str(dest))
        repo.git.worktree("prune")
        dest.parent.mkdir(parents=True, exist_ok=True)
        repo.git.worktree("add", "--detach", "--force", str(dest), sha)
    return dest
