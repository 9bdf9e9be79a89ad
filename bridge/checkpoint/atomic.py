"""Build a directory beside its target and rename it into place, so a failure never leaves partial output.

The staging directory lives in the target's parent (same filesystem, so ``rename`` is atomic). Committing
over an existing directory renames the old one aside first, renames the new one in, and only then deletes
the old one; if the second rename fails the old directory is put back. Until :meth:`AtomicDirectory.commit`
returns, the target is either absent or exactly what it was before. With ``durable`` (the default), every
file and directory of the staging tree is ``fsync``ed before the rename, whoever wrote it.

This is the one implementation of output directories: HF export, ``convert``, ``reshard`` and the
``torch_dist`` writers all use it, so each refuses to replace a directory that is not a checkpoint.
Use it as a context manager (``with AtomicDirectory(dst) as staging: ...`` commits on success and
aborts on any exception) or call :meth:`~AtomicDirectory.commit` / :meth:`~AtomicDirectory.abort`.
"""

from __future__ import annotations

import os
import shutil
import uuid
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from bridge._logging import get_logger
from bridge.errors import CheckpointError

__all__ = ["AtomicDirectory", "check_not_an_input", "fsync_directory", "fsync_tree"]

log = get_logger("checkpoint.atomic")

#: An existing directory is only replaced if it is empty or holds one of these (a previous output of ours or
#: Megatron-LM's): an HF export, a saved parallel layout, a ``torch_dist`` checkpoint.
_CHECKPOINT_MARKERS = (
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "layout.json",
    "latest_checkpointed_iteration.txt",
)


def fsync_directory(path: Path) -> None:
    """Make a directory's entries (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """``fsync`` every regular file under ``root``, then every directory, deepest first."""
    dirs = []
    for dirpath, _, filenames in os.walk(root):
        dirs.append(Path(dirpath))
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for directory in reversed(dirs):
        fsync_directory(directory)


def check_not_an_input(target: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None], *,
                       action: str) -> None:
    """Refuse to write ``target`` when it is one of the ``inputs`` (None entries skipped), lies inside one, or holds
    one: replacing it would destroy what is being read. Every writer checks this before any work."""
    out = Path(target).expanduser().resolve()
    for source in inputs:
        if source is None:
            continue
        src = Path(source).expanduser().resolve()
        if out == src or src in out.parents or out in src.parents:
            relation = "is" if out == src else "is inside" if src in out.parents else "holds"
            raise CheckpointError(
                f"cannot {action} into {target}: it {relation} the input {source}; choose an output directory "
                "outside the input"
            )


def _looks_like_checkpoint(path: Path) -> bool:
    names = os.listdir(path)
    return any(n in _CHECKPOINT_MARKERS or n.endswith(".safetensors") for n in names)


def _remove(staging: Path, created: tuple[Path, ...]) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    for parent in created:  # innermost first; rmdir only succeeds while empty
        try:
            parent.rmdir()
        except OSError:
            break


class AtomicDirectory:
    """A staging directory that becomes ``target`` on :meth:`commit` and vanishes on :meth:`abort`.

    Raises:
        CheckpointError: ``target`` is a file, or a non-empty directory while ``overwrite`` is false, or a
            non-empty directory that does not look like a checkpoint (never replaced, even with ``overwrite``).
    """

    def __init__(self, target: str | os.PathLike[str], *, overwrite: bool = False, durable: bool = True) -> None:
        self.target = Path(os.path.abspath(Path(target).expanduser()))
        self.overwrite = overwrite
        self.durable = durable
        self._check_target()
        created = []
        for parent in [self.target.parent, *self.target.parent.parents]:
            if parent.exists():
                break
            created.append(parent)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.staging = self.target.parent / f".{self.target.name}.tmp-{uuid.uuid4().hex[:12]}"
        self.staging.mkdir()
        self._cleanup = weakref.finalize(self, _remove, self.staging, tuple(created))
        self.done = False

    def _check_target(self) -> None:
        target = self.target
        if not os.path.lexists(target):
            return
        if not target.is_dir() or target.is_symlink():
            raise CheckpointError(
                f"{target} exists and is not a directory; expected a new or existing checkpoint directory"
            )
        if not os.listdir(target):
            return
        if not self.overwrite:
            raise CheckpointError(
                f"{target} already exists and is not empty; pass overwrite=True to replace it "
                "(it is replaced only once the new checkpoint is complete) or choose another directory"
            )
        if not _looks_like_checkpoint(target):
            raise CheckpointError(
                f"refusing to replace {target}: it does not look like a checkpoint (none of {list(_CHECKPOINT_MARKERS)} "
                "and no *.safetensors); "
                "choose an empty or new directory"
            )

    def commit(self) -> Path:
        """Move the staging directory to ``target`` (replacing an old one as described above)."""
        if self.done:
            raise CheckpointError(f"{self.target}: this export was already committed or aborted")
        self._check_target()
        if self.durable:
            fsync_tree(self.staging)
        if os.path.lexists(self.target):
            aside = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(self.target, aside)
            try:
                os.rename(self.staging, self.target)
            except BaseException:
                os.rename(aside, self.target)
                raise
            self._finish()
            shutil.rmtree(aside, ignore_errors=True)
            if aside.exists():
                log.warning("could not delete the replaced checkpoint at %s; remove it by hand", aside)
        else:
            try:
                os.rename(self.staging, self.target)
            except OSError as exc:
                raise CheckpointError(
                    f"{self.target} appeared while the checkpoint was being written ({exc.strerror}); "
                    "nothing was changed, retry with another directory"
                ) from exc
            self._finish()
        return self.target

    def _finish(self) -> None:
        self.done = True
        self._cleanup.detach()
        if self.durable:
            fsync_directory(self.target.parent)

    def abort(self) -> None:
        """Delete the staging directory (and the parents this object created); the target is untouched."""
        self.done = True
        self._cleanup()

    def __enter__(self) -> Path:
        return self.staging

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif not self.done:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
