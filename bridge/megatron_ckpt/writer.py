"""Write built model chunks as a Megatron-LM ``torch_dist`` checkpoint (see :mod:`bridge.megatron_ckpt.layout`).

Every rank calls :func:`save_megatron_model`. Global rank 0 opens one
:class:`~bridge.checkpoint.atomic.AtomicDirectory` (the staging directory beside the target, the
"never replace what is not a checkpoint" guard, fsync of every file, rename on success) and
broadcasts its path; every rank saves its shards into ``iter_0000000/`` there through MCore's
``dist_checkpointing.save`` with the model chunks' ``sharded_state_dict``; rank 0 then adds the
tracker file, ``mcore_compat.json`` and the HF companion files and commits. A failure on any rank
leaves nothing behind and raises on every rank.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bridge import compat
from bridge._logging import get_logger
from bridge.checkpoint.atomic import AtomicDirectory
from bridge.checkpoint.companions import copy_companions
from bridge.checkpoint.paths import CheckpointDir
from bridge.errors import CheckpointError
from bridge.megatron_ckpt.args import megatron_args
from bridge.megatron_ckpt.keys import sharded_leaves
from bridge.megatron_ckpt.layout import (
    HF_DIR,
    RECORD_FILE,
    RECORD_FORMAT,
    RECORD_VERSION,
    TRACKER_FILE,
    hf_dtypes_record,
    iteration_dir_name,
)

__all__ = ["CHECKPOINT_VERSION", "hf_source_dtypes", "model_state_keys", "provider_record", "save_megatron_model",
           "sharded_tensors"]

log = get_logger("megatron_ckpt.writer")

#: Megatron-LM's ``state_dict["checkpoint_version"]`` for current checkpoints.
CHECKPOINT_VERSION = 3.0
#: Provider fields that describe the parallel run, not the model; never carried from one run to the next.
_RUN_FIELDS = frozenset({
    "tensor_model_parallel_size", "pipeline_model_parallel_size", "expert_model_parallel_size", "sequence_parallel",
    "num_layers_in_first_pipeline_stage", "num_layers_in_last_pipeline_stage", "perform_initialization",
    "transformer_layer_spec", "parallel_output",
})


def model_state_keys(count: int) -> list[str]:
    """Megatron-LM's keys for the model chunks in ``common.pt``: ``model``, or ``model0``, ``model1``..."""
    return ["model"] if count == 1 else [f"model{i}" for i in range(count)]


def _json_value(value: Any) -> Any:
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return value
    raise TypeError(type(value).__name__)


def provider_record(provider: Any) -> dict[str, Any]:
    """The provider's JSON-able model settings (parallel-run fields and callables left out, and logged)."""
    import dataclasses

    out: dict[str, Any] = {}
    skipped = []
    fields = {f.name: getattr(provider, f.name) for f in dataclasses.fields(provider)
              if f.name not in _RUN_FIELDS and f.name != "config_overrides"}
    fields.update(getattr(provider, "config_overrides", {}) or {})
    for name, value in sorted(fields.items()):
        try:
            out[name] = _json_value(value)
        except TypeError:
            skipped.append(name)
    if skipped:
        log.debug("provider fields not recorded (not plain data): %s", skipped)
    return out


def _chunks(model: Any) -> list[torch.nn.Module]:
    chunks = list(model) if isinstance(model, (list, tuple)) else [model]
    out = []
    for chunk in chunks:
        while hasattr(chunk, "module") and isinstance(chunk.module, torch.nn.Module):
            chunk = chunk.module
        out.append(chunk)
    return out


def _shared(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _open_staging(path: Path, overwrite: bool, durable: bool) -> tuple[AtomicDirectory | None, Path]:
    rank = dist.get_rank() if dist.is_initialized() else 0
    stage, answer = None, None
    if rank == 0:
        try:
            stage = AtomicDirectory(path, overwrite=overwrite, durable=durable)
            answer = ("ok", str(stage.staging))
        except CheckpointError as exc:
            answer = ("error", str(exc))
    answer = _shared(answer)
    if answer[0] == "error":
        raise CheckpointError(answer[1])
    return stage, Path(answer[1])


def sharded_tensors(sharded: Mapping[str, Any]) -> dict[str, Any]:
    """key -> ``ShardedTensor`` of a sharded state dict, factories built (e.g. gated fc1: its gate and up halves,
    under the factory's key), from :func:`bridge.megatron_ckpt.keys.sharded_leaves`."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    return {t.key: t for t in sharded_leaves(sharded) if isinstance(t, ShardedTensor)}


def _param_shapes(sharded: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {key: {"shape": list(t.global_shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for key, t in sharded_tensors(sharded).items()}


def _all_param_shapes(sharded: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    mine = _param_shapes(sharded)
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return mine
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    merged: dict[str, dict[str, Any]] = {}
    for part in gathered:
        merged.update(part)
    return dict(sorted(merged.items()))


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(dict(data), indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _attempt(fn: Any, *args: Any) -> str | None:
    """Run ``fn``; the error in words, or None."""
    try:
        fn(*args)
    except Exception as exc:  # every rank must reach the agreement below, whatever failed
        log.debug("torch_dist save failed on this rank", exc_info=True)
        return f"{type(exc).__name__}: {exc}"
    return None


def _agree(failure: str | None) -> str | None:
    """The first rank's failure, on every rank (None when all succeeded)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return failure
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, failure)
    return next((f"rank {r}: {f}" for r, f in enumerate(gathered) if f), None)


def hf_source_dtypes(source: Any) -> dict[str, Any] | None:
    """The record's ``hf_dtypes`` of an HF checkpoint (anything with ``keys()`` and ``dtype(name)``, or a
    directory), or None for a directory without weights (a config-only source)."""
    if isinstance(source, (str, os.PathLike)):
        from bridge.checkpoint.reader import HFCheckpointReader

        try:
            source = HFCheckpointReader(source)
        except CheckpointError:
            return None
    return hf_dtypes_record({n: str(source.dtype(n)).removeprefix("torch.") for n in source.keys()})


def _finish(stage: AtomicDirectory, staging: Path, *, provider: Any, architecture: str, world: int,
            params: dict[str, Any], hf_source: Any, hf_config: Mapping[str, Any] | None,
            hf_model: Mapping[str, Any] | None) -> None:
    """Rank 0: the tracker file, ``mcore_compat.json`` and ``hf/``, then the atomic rename."""
    (staging / TRACKER_FILE).write_text("0", encoding="utf-8")
    model_class = getattr(provider, "model_class", "gpt")
    if hasattr(provider, "resolved_model_class"):
        model_class = provider.resolved_model_class()
    record = {
        "format": RECORD_FORMAT, "version": RECORD_VERSION,
        "mcore_version": str(compat.installed_version()),
        "model_class": model_class,
        "architecture": architecture,
        "iteration": 0,
        "parallel": {"tp": provider.tensor_model_parallel_size, "pp": provider.pipeline_model_parallel_size,
                     "ep": provider.expert_model_parallel_size, "world_size": world},
        "vocab_padding": provider.vocab_padding.to_json(),
        "provider": provider_record(provider),
        "params": params,
    }
    source = CheckpointDir.resolve(hf_source) if hf_source is not None else None
    dtypes = hf_source_dtypes(source.path) if source is not None else None
    record.update({k: v for k, v in (("hf_source", hf_model), ("hf_dtypes", dtypes)) if v is not None})
    _write_json(staging / RECORD_FILE, record)
    (staging / HF_DIR).mkdir()
    copy_companions(source, staging / HF_DIR, config=hf_config, durable=False)
    stage.commit()


def save_megatron_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    provider: Any,
    architecture: str,
    hf_source: str | os.PathLike[str] | None = None,
    hf_config: Mapping[str, Any] | None = None,
    hf_model: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    durable: bool = True,
) -> Path:
    """Save this rank's ``model`` chunks into the ``torch_dist`` checkpoint at ``path`` (every rank calls it).

    Args:
        model: the chunks (a list, as ``provide_distributed_model`` returns, or one module).
        provider: the provider that built them (recorded, and turned into Megatron-LM's ``args``).
        architecture: the HF architecture string (``"LlamaForCausalLM"``) export maps back with.
        hf_source: the HF checkpoint directory whose config, tokenizer and code files go into ``hf/``.
        hf_config: the HF ``config.json`` to write there instead of the source's.
        hf_model: where the HF model came from (``bridge.saved_checkpoint.source_record``), recorded as
            ``hf_source`` so that ``AutoBridge.get_hf_model_id_from_checkpoint`` answers for this checkpoint.
        overwrite: replace an existing checkpoint at ``path`` (never a directory that is not one).
    """
    from megatron.core import dist_checkpointing

    path = Path(os.path.abspath(Path(path).expanduser()))
    started = time.perf_counter()
    chunks = _chunks(model)
    world = dist.get_world_size() if dist.is_initialized() else 1
    stage, staging = _open_staging(path, overwrite, durable)
    params: dict[str, Any] = {}
    try:
        iteration_dir = staging / iteration_dir_name(0)
        if stage is not None:
            iteration_dir.mkdir()
        if world > 1:
            dist.barrier()
        sharded = {key: chunk.sharded_state_dict() for key, chunk in zip(model_state_keys(len(chunks)), chunks)}
        params = _all_param_shapes(sharded)
        state = {"args": megatron_args(provider, world_size=world), "checkpoint_version": CHECKPOINT_VERSION,
                 "iteration": 0, "num_floating_point_operations_so_far": 0, **sharded}
        failure = _agree(_attempt(dist_checkpointing.save, state, str(iteration_dir)))
        if failure:
            raise CheckpointError(f"writing the torch_dist checkpoint {path} failed on some rank: {failure}")
        finished = None
        if stage is not None:
            finished = _attempt(lambda: _finish(stage, staging, provider=provider, architecture=architecture,
                                                world=world, params=params, hf_source=hf_source, hf_config=hf_config,
                                                hf_model=hf_model))
        failure = _agree(finished)  # every rank learns whether rank 0 committed
        if failure:
            raise CheckpointError(f"finishing the torch_dist checkpoint {path} failed on {failure}")
    except BaseException:
        if stage is not None:
            stage.abort()
        raise
    finally:
        if world > 1:
            dist.barrier()
    log.info("saved torch_dist checkpoint (%d tensors, TP=%d, PP=%d) to %s in %.2f s", len(params),
             provider.tensor_model_parallel_size, provider.pipeline_model_parallel_size, path,
             time.perf_counter() - started)
    return path
