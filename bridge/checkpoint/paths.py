"""Path safety for checkpoint directories: every file we open is a plain name resolved inside the directory.

A checkpoint directory names its files in ``model.safetensors.index.json``; a hostile index could point at
``../../etc/passwd`` or a symlink could lead out of the directory. :class:`CheckpointDir` refuses both
before anything is opened. One documented exception: a Hugging Face hub cache snapshot
(``<repo>/snapshots/<revision>/``) holds symlinks into the same repository's ``blobs/`` folder, so that
folder is trusted too when the directory is such a snapshot.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from bridge.errors import CheckpointError

__all__ = ["MAX_JSON_SIZE", "CheckpointDir", "check_member_name"]

#: JSON side files (index, config) larger than this are refused unread.
MAX_JSON_SIZE = 100_000_000

_FORBIDDEN_CHARS = frozenset("/\\:\0")


def check_member_name(name: object, *, context: str) -> str:
    """Return ``name`` if it is a plain file name (one path component, no drive, no separator), else raise."""
    if not isinstance(name, str):
        raise CheckpointError(f"{context}: expected a file name (string), found {type(name).__name__} {name!r:.80}")
    bad = sorted({c for c in name if c in _FORBIDDEN_CHARS or ord(c) < 32})
    try:
        os.fsencode(name)
    except UnicodeError:
        bad.append("an unencodable character")
    if not name or name in {".", ".."} or bad:
        reason = f"contains {', '.join(repr(c) for c in bad)}" if bad else "is not a file name"
        if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or name.startswith("\\"):
            reason = f"is an absolute path or has a drive letter ({reason})"
        elif ".." in re.split(r"[/\\]", name):
            reason = f"climbs out of the directory with '..' ({reason})"
        raise CheckpointError(
            f"{context}: {name!r:.120} {reason}; expected a plain file name inside the checkpoint directory "
            "(no '/', '\\', '..', drive letter or absolute path). Fix the index or re-export the checkpoint"
        )
    return name


def _trusted_roots(directory: Path) -> tuple[Path, ...]:
    roots = [directory]
    if directory.parent.name == "snapshots":
        blobs = directory.parent.parent / "blobs"
        if blobs.is_dir():
            roots.append(blobs.resolve())
    return tuple(roots)


@dataclass(frozen=True)
class CheckpointDir:
    """A resolved checkpoint directory and the roots its files may resolve into."""

    path: Path
    trusted: tuple[Path, ...]

    @classmethod
    def resolve(cls, path: str | os.PathLike[str]) -> CheckpointDir:
        given = Path(path).expanduser()
        try:
            directory = given.resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            raise CheckpointError(
                f"checkpoint directory {given} does not exist; expected a local folder with config.json and "
                "safetensors weights (download a hub repo first, e.g. huggingface_hub.snapshot_download)"
            ) from None
        if not directory.is_dir():
            raise CheckpointError(f"{given} is not a directory; expected a checkpoint folder, not a single file")
        return cls(path=directory, trusted=_trusted_roots(directory))

    def names(self) -> list[str]:
        """Sorted names of the directory's entries (no recursion)."""
        return sorted(os.listdir(self.path))

    def member(self, name: str, *, context: str) -> Path | None:
        """The real path of regular file ``name`` in this directory, ``None`` if absent; raises if unsafe."""
        check_member_name(name, context=context)
        candidate = self.path / name
        try:
            os.lstat(candidate)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"{context}: cannot inspect {candidate}: {exc.strerror}") from None
        real = Path(os.path.realpath(candidate))
        if not any(real.is_relative_to(root) for root in self.trusted):
            raise CheckpointError(
                f"{context}: {candidate} is a symlink to {real}, outside the checkpoint directory {self.path}; "
                "refusing to read it. Copy the file into the directory if you trust it"
            )
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            raise CheckpointError(f"{context}: {candidate} is a dangling symlink (to {real})") from None
        except OSError as exc:
            raise CheckpointError(f"{context}: cannot inspect {candidate}: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise CheckpointError(f"{context}: {candidate} is not a regular file; expected a file")
        return real

    def require(self, name: str, *, context: str) -> Path:
        """Like :meth:`member`, but a missing file is an error."""
        real = self.member(name, context=context)
        if real is None:
            raise CheckpointError(f"{context}: {self.path / name} does not exist")
        return real

    def load_json(self, name: str, *, allow_constants: bool = True) -> Any:
        """Parse JSON file ``name``; invalid JSON is a :class:`CheckpointError` naming file, line and column."""
        real = self.require(name, context=f"reading {name}")
        with open(real, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_JSON_SIZE:
                raise CheckpointError(f"{self.path / name} is {size} bytes, over the {MAX_JSON_SIZE}-byte limit")
            data = handle.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(
                f"{self.path / name}: not UTF-8 text (byte {exc.start}); fix or re-download it"
            ) from None
        hook = None if allow_constants else _no_constant
        try:
            return json.loads(text, parse_constant=hook)
        except json.JSONDecodeError as exc:
            raise CheckpointError(
                f"{self.path / name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                "fix the file or re-download it"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"{self.path / name}: invalid JSON ({exc}); fix or re-download it") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
