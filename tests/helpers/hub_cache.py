"""A Hugging Face hub cache built offline, laid out the way ``huggingface_hub`` writes it.

``<cache>/models--{org}--{name}/`` holds ``blobs/<hash>`` (file contents: the git blob sha1 for small
files, the sha256 for LFS-tracked weights, as on the Hub), ``snapshots/<commit>/<file>`` (relative
symlinks into ``blobs/``) and ``refs/<branch or tag>`` (a file holding the commit). Nothing is
downloaded; ``huggingface_hub.scan_cache_dir`` reads the result like any other cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["add_to_hub_cache", "repo_folder"]

_LFS_SUFFIXES = (".safetensors", ".bin", ".model")


def repo_folder(cache: Path, repo_id: str) -> Path:
    """``<cache>/models--org--name``."""
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def _blob_name(data: bytes, name: str) -> str:
    if name.endswith(_LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's object id


def add_to_hub_cache(cache: Path, repo_id: str, source_dir: Path, *, commit: str | None = None,
                     refs: Sequence[str] = ("main",), files: Sequence[str] | None = None) -> Path:
    """Add the top-level files of ``source_dir`` (or only ``files``) as one commit of ``repo_id``.

    ``commit`` defaults to a hash of the contents (40 hex digits, like a git commit); every name of
    ``refs`` (``"main"``, a tag such as ``"v1.0"``) is pointed at it. Returns the snapshot directory.
    """
    names = sorted(files) if files is not None else sorted(p.name for p in Path(source_dir).iterdir() if p.is_file())
    contents = {n: (Path(source_dir) / n).read_bytes() for n in names}
    if commit is None:
        digest = hashlib.sha1()
        for n in names:
            digest.update(n.encode() + b"\0" + hashlib.sha1(contents[n]).digest())
        commit = digest.hexdigest()
    repo = repo_folder(cache, repo_id)
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for n, data in contents.items():
        blob = repo / "blobs" / _blob_name(data, n)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / n
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.join("..", "..", "blobs", blob.name), link)
    for ref in refs:
        ref_file = repo / "refs" / ref
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        ref_file.write_text(commit)
    return snapshot
