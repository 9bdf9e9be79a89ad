"""Where an HF checkpoint's files are: a local directory, or a Hub ID resolved through ``huggingface_hub``.

:func:`resolve_hf_source` is the one entry point. A string that names an existing directory is that
directory (as in ``transformers``); anything else must be a strict Hub ID ``org/name``
(:func:`bridge.trust.hub_id_problem`), checked before any lookup, so ``..``, absolute parts or odd
characters never reach the cache or the network. A Hub ID is resolved in the Hugging Face cache
layout (``models--org--name/snapshots/<commit>/``) by ``huggingface_hub``:

* only the files asked for are fetched (:data:`CONFIG`, then :data:`WEIGHTS` or :data:`ALL` later),
  so inspecting a model never downloads its weights;
* ``HF_HUB_OFFLINE`` and ``local_files_only=True`` mean cache only; ``HF_HUB_CACHE``,
  ``HUGGINGFACE_HUB_CACHE`` and ``HF_HOME`` choose the cache. Unlike ``huggingface_hub``, which reads
  them once at import, they are read at each call, so a process (or a test) that sets them later is
  honoured;
* later fetches pass the commit the first one resolved (:attr:`HFSource.pinned`), so the config and
  the weights of one bridge always come from the same commit, even if ``main`` moves in between.

Nothing here decides whether checkpoint code may run: :mod:`bridge.trust` does, on
:attr:`HFSource.trust_subject` (the Hub ID for Hub sources, the path as given for local ones).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge._logging import get_logger
from bridge.checkpoint.companions import COMPANION_FILES
from bridge.errors import CheckpointError
from bridge.trust import hub_id_from_cache_path, hub_id_problem

__all__ = ["ALL", "COMPANIONS", "CONFIG", "WEIGHTS", "HFSource", "hub_cache_dir", "hub_offline", "resolve_hf_source"]

log = get_logger("hub")

#: What :func:`resolve_hf_source` fetches: the config alone (enough to pick a family and build a provider) ...
CONFIG: tuple[str, ...] = ("config.json",)
#: ... the weights (safetensors only: pickled weights are never fetched, see SECURITY.md) ...
WEIGHTS: tuple[str, ...] = ("config.json", "*.safetensors", "*.safetensors.index.json")
#: ... the files a checkpoint keeps next to its weights (config, tokenizer, custom code) ...
COMPANIONS: tuple[str, ...] = (*COMPANION_FILES, "*.py")
#: ... or both (what a conversion reads).
ALL: tuple[str, ...] = tuple(dict.fromkeys((*WEIGHTS, *COMPANIONS)))

_TRUE = {"1", "on", "yes", "true"}
# A git ref or commit as the Hub takes it (``main``, ``v1.0``, ``refs/pr/3``, a 40-hex sha): plain
# components, no ``..``, no leading ``/``; it becomes a path component of the cache, so it is checked.
_REVISION = re.compile(r"[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*", re.ASCII)
_COMMIT = re.compile(r"[0-9a-f]{40}", re.ASCII)


def hub_offline(local_files_only: bool | None = None) -> bool:
    """Whether Hub lookups must stay in the cache: ``local_files_only``, else ``HF_HUB_OFFLINE`` (read now)."""
    if local_files_only is not None:
        return bool(local_files_only)
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face hub cache: ``cache_dir``, else ``HF_HUB_CACHE`` / ``HUGGINGFACE_HUB_CACHE`` /
    ``$HF_HOME/hub`` / ``~/.cache/huggingface/hub`` (environment read now, not at import)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


@dataclass(frozen=True)
class HFSource:
    """An HF checkpoint located on disk.

    Attributes:
        spec: what the caller passed (a path or a Hub ID), for messages.
        path: the local directory holding its files (for a Hub ID, the cache snapshot directory).
        hub_id: ``org/name`` for a Hub source, ``None`` for a local directory.
        revision: the revision asked for (a branch, tag or commit; ``None``: the default branch).
        commit: the commit the snapshot directory belongs to (Hub sources only).
        cache_dir: the hub cache used (Hub sources only).
        offline: whether lookups stayed in the cache.
    """

    spec: str
    path: Path
    hub_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    cache_dir: Path | None = None
    offline: bool = False

    @property
    def is_hub(self) -> bool:
        return self.hub_id is not None

    @property
    def pinned(self) -> str | None:
        """The revision later fetches must use: the resolved commit."""
        return self.commit or self.revision

    @property
    def trust_subject(self) -> str:
        """What :func:`bridge.trust.require_trust` judges: the Hub ID, or the local path as given."""
        return self.hub_id if self.hub_id is not None else self.spec

    def describe(self) -> str:
        if self.hub_id is None:
            return str(self.path)
        return f"{self.hub_id}@{self.commit or self.revision or 'main'}"


def _check_revision(revision: str | None) -> None:
    if revision is None:
        return
    if not isinstance(revision, str) or not revision or len(revision) > 255 or _REVISION.fullmatch(revision) is None \
            or ".." in revision.split("/") or "." in revision.split("/"):
        raise CheckpointError(
            f"revision {revision!r} is not a branch, tag or commit name: expected letters, digits, '-', '_', '.' "
            "in '/'-separated parts without '.' or '..' (e.g. 'main', 'v1.0', 'refs/pr/3' or a 40-hex commit)"
        )


def _not_a_source(spec: str, problem: str) -> CheckpointError:
    where = os.path.abspath(os.path.expanduser(spec)) if spec else "''"
    return CheckpointError(
        f"{spec!r} is neither a local checkpoint directory (there is no directory at {where}) nor a Hub ID "
        f"'org/name' ({problem}). Fix: pass an existing directory with a config.json, or a Hub ID such as "
        "'meta-llama/Llama-3.2-1B'."
    )


def _miss(source: HFSource, wanted: Sequence[str], cause: BaseException | None) -> CheckpointError:
    repo_dir = source.cache_dir / f"models--{source.hub_id.replace('/', '--')}"  # type: ignore[union-attr]
    rev = source.revision or "main"
    how = (
        "offline (HF_HUB_OFFLINE or local_files_only=True), so only the cache was searched"
        if source.offline else "online"
    )
    download = f"hf download {source.hub_id}" + (f" --revision {source.revision}" if source.revision else "")
    reason = f" ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})" if cause else ""
    fixes = [f"fetch it on a machine with network access (`{download}`) into this cache"]
    fixes.append("or point HF_HUB_CACHE / HF_HOME (or cache_dir=) at a cache that has it")
    if source.offline:
        fixes.append("or allow downloads (unset HF_HUB_OFFLINE, pass local_files_only=False)")
    fixes.append("or pass a local checkpoint directory instead")
    return CheckpointError(
        f"could not find {', '.join(wanted)} of the Hub repository {source.hub_id!r} at revision {rev!r}: "
        f"looked in {repo_dir} ({how}){reason}. Fix: " + ", ".join(fixes) + "."
    )


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors

    return (errors.HfHubHTTPError, errors.LocalEntryNotFoundError, errors.EntryNotFoundError, OSError, ValueError)


def _lookup(source: HFSource, files: Sequence[str], token: str | bool | None) -> str:
    """The snapshot directory holding ``files`` of ``source`` (downloading what is missing unless offline)."""
    import huggingface_hub as hf

    repo = source.hub_id
    assert repo is not None
    if tuple(files) == CONFIG and source.offline:
        found = hf.try_to_load_from_cache(repo, "config.json", cache_dir=source.cache_dir, revision=source.revision)
        if not isinstance(found, str):  # None: never cached; _CACHED_NO_EXIST: the Hub said there is none
            known = "the cache records that the repository has no such file" if found is not None else None
            raise _miss(source, files, LookupError(known) if known else None)
        return os.path.dirname(found)
    try:
        return hf.snapshot_download(repo, revision=source.revision, cache_dir=source.cache_dir,
                                    local_files_only=source.offline, allow_patterns=list(files), token=token)
    except _hub_errors() as exc:
        raise _miss(source, files, exc) from exc


def _check_fetched(source: HFSource, files: Sequence[str]) -> None:
    """Offline, ``snapshot_download`` returns the snapshot without checking the files: check them here."""
    names = set(os.listdir(source.path))
    exact = [f for f in files if not any(c in f for c in "*?[")]
    required = ["config.json"] if tuple(files) in (ALL, COMPANIONS) else exact  # companions are optional
    missing = [f for f in required if f not in names]
    wants_weights = any(f.endswith(".safetensors") for f in files)
    if wants_weights and not any(fnmatch.fnmatch(n, "*.safetensors") for n in names):
        missing.append("*.safetensors weights")
    if missing:
        raise _miss(source, missing, None)


def resolve_hf_source(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    files: Sequence[str] = ALL,
    local_files_only: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
) -> HFSource:
    """Locate an HF checkpoint given as a local directory or a Hub ID, fetching ``files`` of a Hub ID.

    Args:
        source: a directory with ``config.json``, or a Hub ID ``org/name``. An existing directory wins
            over a Hub ID of the same spelling (as in ``transformers``; the trust policy treats it as local).
        revision: branch, tag or commit of a Hub ID (default: the repository's default branch). Refused
            for a local directory, which has no revisions.
        files: glob patterns of the files to fetch: :data:`CONFIG`, :data:`WEIGHTS`, :data:`ALL` or your own.
        local_files_only: ``True``: cache only; ``None``: cache only when ``HF_HUB_OFFLINE`` is set.
        cache_dir: the hub cache (default: ``HF_HUB_CACHE`` / ``HF_HOME``, see :func:`hub_cache_dir`).
        token: passed to ``huggingface_hub`` for gated or private repositories.

    Returns:
        an :class:`HFSource`; for a Hub ID its ``path`` is the snapshot directory of ``commit``.

    Raises:
        CheckpointError: ``source`` is neither an existing directory nor a valid Hub ID, ``revision`` is
            malformed, or the files are not in the cache (offline) or on the Hub; the message says what was
            looked for, where, and how to get it.
    """
    if isinstance(source, bytes) or not isinstance(source, (str, os.PathLike)):
        raise CheckpointError(f"expected a directory path or a Hub ID string, found {type(source).__name__}")
    spec = os.fspath(source)
    _check_revision(revision)
    if not spec.strip():
        raise _not_a_source(spec, "it is empty")
    local = Path(spec).expanduser()
    if local.is_dir():
        if revision is not None:
            raise CheckpointError(
                f"revision={revision!r} was given, but {spec!r} is a local directory, which has no revisions. "
                "Fix: drop revision=, or pass the Hub ID to fetch that revision."
            )
        return HFSource(spec=spec, path=local)
    if not isinstance(source, str):
        raise _not_a_source(spec, "a path object is never a Hub ID")
    problem = hub_id_problem(spec)
    if problem is not None:
        raise _not_a_source(spec, problem)
    hub = HFSource(spec=spec, path=Path(), hub_id=spec, revision=revision, cache_dir=hub_cache_dir(cache_dir),
                   offline=hub_offline(local_files_only))
    snapshot = Path(_lookup(hub, tuple(files), token))
    if hub_id_from_cache_path(snapshot) is None or snapshot.parent.name != "snapshots":
        raise CheckpointError(f"huggingface_hub returned {snapshot} for {spec!r}, which is not a cache snapshot "
                              "directory (models--org--name/snapshots/<commit>); is HF_HUB_CACHE a hub cache?")
    commit = snapshot.name if _COMMIT.fullmatch(snapshot.name) else None
    resolved = HFSource(spec=spec, path=snapshot, hub_id=spec, revision=revision, commit=commit,
                        cache_dir=hub.cache_dir, offline=hub.offline)
    _check_fetched(resolved, tuple(files))
    log.debug("resolved %s (%s) to %s, files %s", spec, "offline" if hub.offline else "online", snapshot, list(files))
    return resolved
