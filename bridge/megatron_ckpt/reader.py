"""Load a ``torch_dist`` checkpoint into built model chunks, at any TP x PP (resharding on load).

:func:`load_megatron_model` validates everything it can before a tensor is read: the layout
(:func:`~bridge.megatron_ckpt.layout.locate`), the writer's MCore version, that every file the
tensor index names exists and is long enough (a truncated ``.distcp``), and that every tensor the
model expects is in the checkpoint with the same global shape (a hidden-size mismatch names the
tensor and both shapes). Only then does MCore's ``dist_checkpointing.load`` read this rank's
slices of the global tensors, whatever TP x PP wrote them.

Security: like Megatron-LM, this reads PyTorch pickles (``common.pt`` with ``weights_only=True`` and
MCore's safe globals; DCP's ``.metadata`` index): load only checkpoints you trust.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bridge import compat
from bridge._logging import get_logger
from bridge.errors import CheckpointError
from bridge.megatron_ckpt.layout import CheckpointDirs, check_writer_version, locate, read_record
from bridge.megatron_ckpt.writer import model_state_keys, sharded_tensors

__all__ = ["check_files", "check_shapes", "load_common", "load_into", "open_checkpoint", "storage_index"]

log = get_logger("megatron_ckpt.reader")


def open_checkpoint(path: str | os.PathLike[str]) -> tuple[CheckpointDirs, dict[str, Any] | None]:
    """Locate and validate a checkpoint: ``(dirs, record or None)``; refuses one from a newer MCore."""
    dirs = locate(path)
    record = read_record(dirs)
    check_writer_version(record, str(compat.installed_version()), source=dirs.root)
    check_files(dirs)
    return dirs, record


def storage_index(dirs: CheckpointDirs) -> Any:
    """DCP's tensor index (``.metadata``) of the checkpoint; a damaged one is a :class:`CheckpointError`."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        return FileSystemReader(str(dirs.iteration_dir)).read_metadata()
    except Exception as exc:  # a damaged pickle raises anything from EOFError to UnpicklingError
        raise CheckpointError(
            f"{dirs.iteration_dir / '.metadata'} cannot be read ({type(exc).__name__}: {exc}); the torch_dist "
            "index is damaged or truncated: re-save or re-copy the checkpoint"
        ) from None


def check_files(dirs: CheckpointDirs) -> None:
    """Every ``.distcp`` file the tensor index names exists and holds the bytes the index places in it."""
    index = storage_index(dirs)
    needed: dict[str, int] = {}
    for info in index.storage_data.values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, size in sorted(needed.items()):
        file = dirs.iteration_dir / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing but the tensor index names it; copy the whole iteration directory")
        have = file.stat().st_size
        if have < size:
            raise CheckpointError(
                f"{file} is truncated: {have} bytes, but the tensor index places data up to byte {size}; "
                "the copy or the save was interrupted: re-copy or re-save the checkpoint"
            )


#: The DCP item where megatron-core 0.17+ keeps the common state (earlier releases write ``common.pt``).
_COMMON_ITEM = "common_state/shard_0_1"


def _common_from_dcp(dirs: CheckpointDirs) -> Any:
    import io

    from torch.distributed.checkpoint import FileSystemReader, load
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    class _RawBytes(DefaultLoadPlanner):
        """DCP's default planner unpickles byte items with ``weights_only=False``; this one copies the raw bytes
        into the caller's buffer, unpickled below with ``weights_only=True``."""

        def load_bytes(self, read_item: Any, value: Any) -> None:
            self.state_dict[read_item.dest_index.fqn].write(value.read())

    if _COMMON_ITEM not in storage_index(dirs).state_dict_metadata:
        raise CheckpointError(
            f"{dirs.iteration_dir} has neither common.pt nor the {_COMMON_ITEM!r} item (the common state with "
            "Megatron-LM's args); the checkpoint is incomplete: re-save it"
        )
    buffer = io.BytesIO()
    load({_COMMON_ITEM: buffer}, storage_reader=FileSystemReader(str(dirs.iteration_dir)),
         planner=_RawBytes(flatten_state_dict=False), no_dist=True)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # MCore registers its safe globals (argparse.Namespace...)
    return loaded[0] if isinstance(loaded, list) and len(loaded) == 1 else loaded


def load_common(dirs: CheckpointDirs) -> dict[str, Any]:
    """The common state (args, iteration, checkpoint_version): ``common.pt`` as megatron-core up to 0.16
    writes it (read by MCore's own loader), or the DCP item 0.17+ writes instead (read the way 0.17+ does,
    so a checkpoint from a newer Megatron-LM is readable here too). Both unpickle with ``weights_only``."""
    from megatron.core import dist_checkpointing

    try:
        if (dirs.iteration_dir / "common.pt").is_file():
            common = dist_checkpointing.load_common_state_dict(str(dirs.iteration_dir))
        else:
            common = _common_from_dcp(dirs)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"the common state of {dirs.iteration_dir} cannot be read ({type(exc).__name__}: {str(exc)[:300]}); "
            "it is damaged, or holds objects this megatron-core does not know"
        ) from None
    if not isinstance(common, dict):
        raise CheckpointError(f"the common state of {dirs.iteration_dir} is a {type(common).__name__}, expected a dict")
    return common


def _sharded(chunks: list[torch.nn.Module]) -> dict[str, Any]:
    return {key: chunk.sharded_state_dict() for key, chunk in zip(model_state_keys(len(chunks)), chunks)}


def _expected_tensors(sharded: Mapping[str, Any]) -> dict[str, Any]:
    """key -> ShardedTensor of the model (factories applied, on a copy)."""
    return sharded_tensors(sharded)


def check_shapes(dirs: CheckpointDirs, sharded: Mapping[str, Any]) -> None:
    """Every tensor the model expects is in the checkpoint with the same global shape (vocab rows excepted)."""
    index = storage_index(dirs)
    stored = {k: tuple(v.size) for k, v in index.state_dict_metadata.items() if hasattr(v, "size")}
    expected = _expected_tensors(sharded)
    missing = sorted(k for k in expected if k not in stored)
    if missing:
        raise CheckpointError(
            f"{dirs.iteration_dir} lacks {len(missing)} tensor(s) the model needs, e.g. {missing[:5]}; the checkpoint "
            "is of another model or family (check the HF config named for it)"
        )
    for key in sorted(expected):
        want, have = tuple(expected[key].global_shape), stored[key]
        if want != have and not expected[key].allow_shape_mismatch:
            raise CheckpointError(
                f"{dirs.iteration_dir}: tensor {key!r} has shape {list(have)} in the checkpoint but the model expects "
                f"{list(want)}; the checkpoint is of another architecture (hidden size, heads or layers differ): "
                "build the model from the checkpoint's own HF config"
            )


def _common_strategy(dirs: CheckpointDirs) -> Any:
    """None (MCore's default) when ``common.pt`` exists; else a strategy that leaves the common state to
    :func:`load_common`: releases up to 0.16 insist on ``common.pt``, which 0.17+ no longer write."""
    if (dirs.iteration_dir / "common.pt").is_file():
        return None
    from megatron.core.dist_checkpointing.strategies.common import TorchCommonLoadStrategy

    class _CommonInDCP(TorchCommonLoadStrategy):
        def load_common(self, checkpoint_dir: Any) -> dict[str, Any]:
            return {}

    return _CommonInDCP()


def load_into(dirs: CheckpointDirs, chunks: list[torch.nn.Module], sharded: Mapping[str, Any] | None = None) -> None:
    """Fill this rank's ``chunks`` from the checkpoint (every rank calls it), strictly. ``sharded``: the chunks'
    sharded state dict with its storage keys retargeted (``migrate-ckpt``); None: the chunks' own."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.validation import StrictHandling

    sharded = _sharded(chunks) if sharded is None else sharded
    check_shapes(dirs, sharded)
    try:
        # up to 0.16 the common state has its own strategy (and file); 0.17+ read it from the DCP files
        extra = {"common_strategy": _common_strategy(dirs)} if compat.has_feature("dist_ckpt_common_strategy") else {}
        loaded, missing, unexpected = dist_checkpointing.load(
            sharded, str(dirs.iteration_dir), strict=StrictHandling.RETURN_ALL, **extra
        )
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"loading {dirs.iteration_dir} failed ({type(exc).__name__}: {str(exc)[:500]})"
        ) from exc
    # MCore's naming: "unexpected" = asked for by the model but absent from the checkpoint; "missing" = in the
    # checkpoint but not asked for (e.g. the common state, optimizer state): only the former is an error.
    absent = sorted(k for k in unexpected if not k.endswith("_extra_state"))
    if absent:
        raise CheckpointError(f"{dirs.iteration_dir} lacks {absent[:5]} (and {max(len(absent) - 5, 0)} more)")
    for key, chunk in zip(model_state_keys(len(chunks)), chunks):
        result = chunk.load_state_dict(loaded[key], strict=False)
        absent = sorted(k for k in result.missing_keys if not k.endswith("_extra_state"))
        if absent or result.unexpected_keys:
            raise CheckpointError(
                f"{dirs.iteration_dir}: {key} did not match the model: missing {absent[:5]}, "
                f"unexpected {sorted(result.unexpected_keys)[:5]}"
            )
    log.debug("loaded %s into %d chunk(s) (%d checkpoint keys not asked for)", dirs.iteration_dir, len(chunks),
              len(missing))
