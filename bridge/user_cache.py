"""The user's cache root (``$MCORE_COMPAT_CACHE`` or ``~/.cache/mcore-compat``) and its atomic file write.

One implementation for the whole project: :mod:`harness.cache` re-exports both (the harness keeps its
downloads, facts and worktrees there; the bridge its resolved HF configs, :mod:`bridge.config_cache`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["CACHE_ENV", "atomic_write_text", "default_cache_dir"]

CACHE_ENV = "MCORE_COMPAT_CACHE"
"""Environment variable relocating the cache root."""

_UMASK = os.umask(0)
os.umask(_UMASK)


def default_cache_dir() -> Path:
    """``$MCORE_COMPAT_CACHE`` if set, else ``~/.cache/mcore-compat``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mcore-compat"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
