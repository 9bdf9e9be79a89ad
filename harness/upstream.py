"""Move the pinned ``3rdparty/Megatron-LM`` submodule to an upstream commit, then put it back.

``mcore-compat run`` (and the CI workflow upstream triggers) tests this project at a new
Megatron-LM commit. :class:`SubmoduleCheckout` fetches that commit from a repository URL or
path into the submodule and checks it out (detached), so the superproject's gitlink shows
the new commit in the working tree. It is safe in a developer's checkout:

- nothing is staged or committed in the superproject (its index and HEAD never change);
- a submodule with modified tracked files is refused, before anything is touched;
- on exit the submodule goes back to where it was (its branch, or its detached commit; a
  submodule that was not initialised has the clone made for the run removed again), unless
  ``keep=True``; :attr:`SubmoduleCheckout.outcome` says what happened and how to undo it.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import git

from harness.errors import HarnessError, RevisionError
from harness.gitrepo import closest_refs, resolve_ref
from harness.versions import SUBMODULE_PATH

__all__ = ["CheckoutError", "SubmoduleCheckout", "SubmoduleState", "normalise_source", "pinned_commit"]

log = logging.getLogger("harness.upstream")

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_HEX = re.compile(r"^[0-9a-f]{7,40}$")
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
_FETCHED = "refs/remotes/mcore-compat"


class CheckoutError(HarnessError):
    """The submodule cannot be moved safely (dirty, not a gitlink, checkout refused)."""


@dataclass(frozen=True)
class SubmoduleState:
    """Where a submodule stands: ``initialised`` or not, its HEAD commit and branch (None: detached)."""

    initialised: bool
    commit: str | None = None
    branch: str | None = None

    def describe(self) -> str:
        if not self.initialised:
            return "not initialised"
        return f"on branch {self.branch} ({self.commit[:12]})" if self.branch else f"at {self.commit}"


def normalise_source(source: str) -> str:
    """A fetchable location: URLs unchanged, local paths made absolute.

    Raises:
        RevisionError: a local path that does not exist.
    """
    if _URL.match(source):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise RevisionError(
            f"--mcore-repo {source}: no such directory or URL; expected a git URL "
            f"(https://github.com/NVIDIA/Megatron-LM.git, file:///path) or the path of a clone"
        )
    return str(path.resolve())


def pinned_commit(project: Path, submodule: str = SUBMODULE_PATH) -> str:
    """The commit the superproject's HEAD records for ``submodule`` (its gitlink).

    Raises:
        CheckoutError: ``project`` is not a git checkout, or HEAD has no gitlink there.
    """
    try:
        entry = git.Repo(project).head.commit.tree[submodule]
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise CheckoutError(f"--project {project} is not a git checkout; expected this project's root") from exc
    except (KeyError, ValueError) as exc:
        raise CheckoutError(
            f"{project}: HEAD records nothing at {submodule}; expected a gitlink (a git submodule) there"
        ) from exc
    if entry.type != "submodule":
        raise CheckoutError(f"{project}/{submodule} is a {entry.type} in HEAD, expected a submodule gitlink")
    return entry.hexsha


def _state(path: Path) -> SubmoduleState:
    if not (path / ".git").exists():
        return SubmoduleState(initialised=False)
    repo = git.Repo(path)
    branch = None if repo.head.is_detached else repo.active_branch.name
    return SubmoduleState(initialised=True, commit=repo.head.commit.hexsha, branch=branch)


class SubmoduleCheckout:
    """Context manager: the submodule at ``ref`` (fetched from ``source``) inside the block.

    Attributes set on entry: ``pinned`` (superproject gitlink), ``target`` (full SHA),
    ``before`` (:class:`SubmoduleState`), ``path``; after exit: ``outcome`` (one line).
    """

    def __init__(self, project: Path, source: str, ref: str, *, keep: bool = False,
                 submodule: str = SUBMODULE_PATH) -> None:
        self.project = Path(project).resolve()
        self.submodule = submodule
        self.path = self.project / submodule
        self.source = normalise_source(source)
        self.ref = ref.strip()
        self.keep = keep
        self.pinned = ""
        self.target = ""
        self.before = SubmoduleState(initialised=False)
        self.outcome = ""
        self._cloned = False

    @property
    def repo(self) -> git.Repo:
        return git.Repo(self.path)

    def __enter__(self) -> SubmoduleCheckout:
        self.pinned = pinned_commit(self.project, self.submodule)
        self.before = _state(self.path)
        if self.before.initialised:
            self._refuse_dirty()
        else:
            self._clone()
        try:
            self.target = self._fetch()
            self._checkout(self.target)
        except BaseException:
            self._restore()
            raise
        log.info("%s: checked out %s (pinned %s)", self.submodule, self.target, self.pinned)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.keep:
            self.outcome = (
                f"{self.submodule} left at {self.target[:12]} (was {self.before.describe()}; nothing staged "
                f"or committed); undo with `{self._undo_hint()}`"
            )
        else:
            self._restore()

    def has_commit(self, sha: str) -> bool:
        """Whether the submodule's repository holds commit ``sha``."""
        try:
            self.repo.git.cat_file("-e", f"{sha}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    # -- steps ----------------------------------------------------------------------------

    def _refuse_dirty(self) -> None:
        repo = self.repo
        if repo.is_dirty(index=True, working_tree=True, untracked_files=False):
            changed = sorted({d.a_path for d in repo.index.diff(None)} | {d.a_path for d in repo.index.diff("HEAD")})
            raise CheckoutError(
                f"{self.submodule} has uncommitted changes ({', '.join(changed[:5])}"
                f"{', ...' if len(changed) > 5 else ''}); expected a clean submodule so that it can be "
                f"moved and restored; commit or stash them (git -C {self.submodule} stash) and run again"
            )

    def _clone(self) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            raise CheckoutError(
                f"{self.submodule} is not an initialised submodule but holds files; expected it empty "
                f"(as after a plain clone) or initialised (git submodule update --init {self.submodule})"
            )
        log.info("%s is not initialised: cloning %s into it for this run", self.submodule, self.source)
        try:
            git.Repo.clone_from(self.source, self.path, no_checkout=True)
        except git.GitCommandError as exc:
            shutil.rmtree(self.path / ".git", ignore_errors=True)
            raise _unreachable(self.source, exc) from exc
        self._cloned = True

    def _fetch(self) -> str:
        repo = self.repo
        ref = self.ref.lower() if _HEX.match(self.ref.lower()) else self.ref
        if _FULL_SHA.match(ref) and self.has_commit(ref):
            return ref
        if _HEX.match(ref):
            try:  # servers that allow fetching a commit by id (GitHub, file://)
                repo.git.fetch("--quiet", self.source, ref)
            except git.GitCommandError:
                log.debug("fetching %s by id failed; fetching branches and tags", ref)
        if not (_HEX.match(ref) and self.has_commit(ref)):
            try:
                repo.git.fetch("--quiet", "--tags", "--force", self.source, f"+refs/heads/*:{_FETCHED}/*")
            except git.GitCommandError as exc:
                raise _unreachable(self.source, exc) from exc
        for candidate in (ref, f"{_FETCHED}/{ref}"):
            try:
                return resolve_ref(repo, candidate)
            except RevisionError:
                pass
        close = closest_refs(repo, ref) or _newest_tags(repo)
        raise RevisionError(
            f"unknown commit {self.ref!r} in {self.source}: expected a commit SHA, tag or branch of that "
            f"repository; closest refs: {', '.join(close) if close else 'none (the repository has no tags)'}"
        )

    def _checkout(self, sha: str) -> None:
        try:
            self.repo.git.checkout("--quiet", "--detach", sha)
        except git.GitCommandError as exc:
            raise CheckoutError(
                f"cannot check out {sha} in {self.submodule}: {exc.stderr.strip()}; expected a checkout "
                f"without conflicting untracked files (remove them, or run in a fresh clone)"
            ) from exc

    def _restore(self) -> None:
        if self._cloned:
            self._remove_clone()
            self.outcome = f"{self.submodule} was not initialised; the clone made for this run was removed"
            return
        before = self.before
        assert before.commit is not None
        try:
            self.repo.git.checkout("--quiet", before.branch or before.commit)
        except git.GitCommandError as exc:
            self.outcome = (
                f"could NOT restore {self.submodule} ({exc.stderr.strip()}); it is at {self.target[:12]}; "
                f"restore with `{self._undo_hint()}`"
            )
            log.error("%s", self.outcome)
            return
        self.outcome = f"{self.submodule} restored ({before.describe()})"

    def _remove_clone(self) -> None:
        """Delete the clone this run made (its worktrees first), leaving the empty directory."""
        try:
            listing = self.repo.git.worktree("list", "--porcelain")
        except (git.GitCommandError, git.InvalidGitRepositoryError, git.NoSuchPathError):
            listing = ""
        for line in listing.splitlines():
            path = line.removeprefix("worktree ").strip()
            if line.startswith("worktree ") and Path(path).resolve() != self.path.resolve():
                shutil.rmtree(path, ignore_errors=True)
        for child in self.path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def _undo_hint(self) -> str:
        if not self.before.initialised:
            return f"git submodule deinit -f {self.submodule}"
        return f"git -C {self.submodule} checkout {self.before.branch or self.before.commit}"


def _newest_tags(repo: git.Repo, n: int = 5) -> list[str]:
    """The ``n`` most recently created tags (suggestions for an unknown commit id)."""
    try:
        out = repo.git.for_each_ref("--sort=-creatordate", f"--count={n}", "--format=%(refname:short)", "refs/tags")
    except git.GitCommandError:
        return []
    return out.split()


def _unreachable(source: str, exc: git.GitCommandError) -> RevisionError:
    detail = (exc.stderr or str(exc)).strip().splitlines()
    return RevisionError(
        f"repository {source} is unreachable ({detail[-1] if detail else exc}); expected a git URL this "
        f"machine can fetch, or the path of a local Megatron-LM clone"
    )
