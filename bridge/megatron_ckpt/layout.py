"""The on-disk layout of a Megatron-LM ``torch_dist`` checkpoint, and the record mcore-compat adds next to it.

Megatron-LM's layout (``megatron/training/checkpointing.py``)::

    <dir>/latest_checkpointed_iteration.txt     the iteration ("0") or "release"
    <dir>/iter_0000000/metadata.json            dist_checkpointing backend record
    <dir>/iter_0000000/common.pt                args, checkpoint_version, iteration (torch.save); from
                                                megatron-core 0.17 on, inside the DCP files instead
                                                (item ``common_state``)
    <dir>/iter_0000000/.metadata, __*_*.distcp  the torch_dist (PyTorch DCP) tensors

What mcore-compat adds, so that export needs no other input::

    <dir>/mcore_compat.json                     RECORD_FORMAT: writer's MCore version, model class,
                                                architecture, provider settings, parallel layout,
                                                vocab padding, every tensor's global shape and dtype
    <dir>/hf/                                   HF config, generation config, tokenizer, custom code

The record's optional keys: ``hf_source`` (the HF model it was imported from: Hub ID or absolute path,
revision, commit; :func:`recorded_hf_model_id` reads it back) and ``hf_dtypes`` (the source's tensor
dtypes, :func:`hf_dtypes_record`, so export writes each tensor in its source dtype).

Every reader here validates before loading and names the file and the fix in its error.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from bridge.errors import CheckpointError

__all__ = [
    "HF_DIR",
    "RECORD_FILE",
    "RECORD_FORMAT",
    "RECORD_VERSION",
    "TRACKER_FILE",
    "CheckpointDirs",
    "check_writer_version",
    "hf_dtype_of",
    "hf_dtypes_record",
    "iteration_dir_name",
    "locate",
    "read_record",
    "recorded_hf_model_id",
]

TRACKER_FILE = "latest_checkpointed_iteration.txt"
RECORD_FILE = "mcore_compat.json"
RECORD_FORMAT = "mcore-compat.megatron-checkpoint"
RECORD_VERSION = 1
HF_DIR = "hf"
_ITERATION = re.compile(r"\d{1,12}")


def iteration_dir_name(iteration: int) -> str:
    """``iter_0000000`` as Megatron-LM names it."""
    return f"iter_{iteration:07d}"


@dataclass(frozen=True)
class CheckpointDirs:
    """A located checkpoint: its root, the iteration directory that holds the tensors, and the iteration."""

    root: Path
    iteration_dir: Path
    iteration: int | None  # None for a "release" checkpoint

    @property
    def record(self) -> Path:
        return self.root / RECORD_FILE

    @property
    def hf_dir(self) -> Path:
        return self.root / HF_DIR


def _read_tracker(tracker: Path) -> tuple[int | None, str]:
    text = tracker.read_text(encoding="utf-8", errors="replace").strip()
    if text == "release":
        return None, "release"
    if not _ITERATION.fullmatch(text):
        raise CheckpointError(
            f"{tracker} holds {text[:40]!r}; expected an iteration number or 'release' as Megatron-LM writes. "
            "The file is damaged: write the iteration of the iter_* directory to keep into it"
        )
    return int(text), iteration_dir_name(int(text))


def locate(path: str | os.PathLike[str]) -> CheckpointDirs:
    """Find the tensors of a checkpoint given its root (with the tracker file) or an ``iter_*`` directory.

    Raises:
        CheckpointError: no such directory, a damaged tracker, a tracker naming a missing iteration,
            or an iteration directory without ``metadata.json`` / ``common.pt`` / ``.metadata``.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; expected a Megatron torch_dist checkpoint directory")
    tracker = path / TRACKER_FILE
    if tracker.is_file():
        iteration, name = _read_tracker(tracker)
        iteration_dir, root = path / name, path
        if not iteration_dir.is_dir():
            present = sorted(p.name for p in path.glob("iter_*")) + (["release"] if (path / "release").is_dir() else [])
            raise CheckpointError(
                f"{tracker} points at {name}, but {iteration_dir} does not exist (found {present or 'no iteration'}); "
                "the checkpoint is incomplete: copy that iteration too, or write one of the present ones into the tracker"
            )
    elif (path / "metadata.json").is_file() or (path / "common.pt").is_file():
        iteration_dir, root = path, path.parent
        match = re.fullmatch(r"iter_(\d+)", path.name)
        iteration = int(match.group(1)) if match else None
    else:
        raise CheckpointError(
            f"{path} has no {TRACKER_FILE} and is not an iteration directory (no metadata.json): "
            "expected a checkpoint written by Megatron-LM or mcore-compat import-ckpt"
        )
    for name, what in (("metadata.json", "dist_checkpointing's backend record"),
                       (".metadata", "the torch_dist tensor index")):  # common.pt: up to 0.16 only (see reader)
        if not (iteration_dir / name).is_file():
            raise CheckpointError(
                f"{iteration_dir / name} is missing ({what}); the checkpoint is incomplete or was not written "
                "with the torch_dist format: re-save it, or copy the whole iteration directory"
            )
    _check_metadata_json(iteration_dir / "metadata.json")
    return CheckpointDirs(root=root, iteration_dir=iteration_dir, iteration=iteration)


def _check_metadata_json(path: Path) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); re-save the checkpoint") from None
    backend = data.get("sharded_backend") if isinstance(data, dict) else None
    if backend != "torch_dist":
        raise CheckpointError(
            f"{path} names the sharded backend {backend!r}; only 'torch_dist' checkpoints are supported "
            "(re-save with --ckpt-format torch_dist)"
        )


def read_record(dirs: CheckpointDirs) -> dict[str, Any] | None:
    """The validated ``mcore_compat.json`` of a checkpoint, or None when Megatron-LM wrote it (no record)."""
    path = dirs.record
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); re-write the checkpoint with import-ckpt") from None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        raise CheckpointError(f"{path}: expected format {RECORD_FORMAT!r}, found {str(data)[:80]!r}")
    if data.get("version") != RECORD_VERSION:
        raise CheckpointError(
            f"{path}: record version {data.get('version')!r}, this mcore-compat reads version {RECORD_VERSION}; "
            "upgrade mcore-compat"
        )
    for key, kind in (("mcore_version", str), ("model_class", str), ("architecture", str), ("provider", dict),
                      ("parallel", dict), ("vocab_padding", dict), ("params", dict)):
        if not isinstance(data.get(key), kind):
            raise CheckpointError(f"{path}: field {key!r} must be a {kind.__name__}, found {data.get(key)!r:.80}")
    return data


def check_writer_version(record: dict[str, Any] | None, installed: str, *, source: Path) -> None:
    """Refuse a checkpoint written by a newer megatron-core than the installed one (when the writer is recorded)."""
    if record is None:
        return
    writer = record["mcore_version"]
    try:
        newer = Version(writer).release > Version(installed).release
    except InvalidVersion:
        raise CheckpointError(f"{source}: unreadable writer version {writer!r}") from None
    if newer:
        raise CheckpointError(
            f"{source} was written by megatron-core {writer}, newer than the installed {installed}; a newer release "
            f"may store tensors an older one cannot read. Install megatron-core>={writer} to load it, or re-write "
            "the checkpoint from HF with this release (mcore-compat import-ckpt)"
        )


def hf_dtypes_record(dtypes: dict[str, str]) -> dict[str, Any]:
    """The record's ``hf_dtypes``: the source's most common tensor dtype and the tensors that differ
    (``{"default": "bfloat16", "except": {"model.norm.weight": "float32"}}``), from ``name -> dtype name``."""
    counts: dict[str, int] = {}
    for dtype in dtypes.values():
        counts[dtype] = counts.get(dtype, 0) + 1
    default = max(sorted(counts), key=counts.__getitem__) if counts else None
    return {"default": default, "except": {n: d for n, d in sorted(dtypes.items()) if d != default}}


def hf_dtype_of(record: dict[str, Any] | None, name: str) -> str | None:
    """The source dtype (a ``torch`` attribute name) the record gives HF tensor ``name``, or None (no record,
    or a record written before ``hf_dtypes`` existed)."""
    table = (record or {}).get("hf_dtypes")
    if not isinstance(table, dict):
        return None
    value = table.get("except", {}).get(name, table.get("default"))
    return value if isinstance(value, str) else None


def recorded_hf_model_id(path: str | os.PathLike[str]) -> str | None:
    """The HF model (Hub ID or absolute path) a ``torch_dist`` checkpoint was imported from, as its record's
    ``hf_source`` names it; None for a directory without a record (Megatron-LM wrote it) or an older record.

    Raises:
        CheckpointError: the record exists but is damaged (see :func:`read_record`), or ``hf_source`` is not
            an object with a string ``hf_model_id``.
    """
    root = Path(path)
    if not (root / RECORD_FILE).is_file():
        return None
    record = read_record(CheckpointDirs(root=root, iteration_dir=root, iteration=None))
    source = record.get("hf_source") if record is not None else None
    if source is None:
        return None
    if not isinstance(source, dict) or not isinstance(source.get("hf_model_id"), str):
        raise CheckpointError(f"{root / RECORD_FILE}: 'hf_source' must be an object with a string 'hf_model_id', "
                              f"found {source!r:.120}; re-write the checkpoint with import-ckpt")
    return source["hf_model_id"]
