"""Conversion tasks: which HF tensors feed which Megatron parameter, resolved for one model.

A :class:`ConversionTask` pairs one parameter of a built model chunk (local name, global
name) with its resolved mapping. Import runs the tasks forward (HF -> full Megatron
tensor -> this rank's TP shard -> parameter); export runs them backwards (TP shards ->
full tensor -> HF tensors), gathering across TP and PP ranks to global rank 0.
Everything is validated before any tensor is read: unmapped parameters, missing and
unexpected HF tensors are reported together, sorted.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist

from bridge import compat
from bridge._logging import get_logger
from bridge.errors import WeightMismatchError, tensors_mismatch
from bridge.mappings import ExpertStacker, MappingContext, MegatronMappingRegistry, MegatronParamMapping
from bridge.parallel import kinds as tp_ops
from bridge.streaming.files import SliceReader
from bridge.streaming.shards import shard_pieces, tp_meta
from bridge.streaming.staging import DeviceUploader

__all__ = ["ConversionTask", "build_tasks", "is_expert_param", "iter_export", "load_weights", "tp_meta"]

log = get_logger("conversion")

_LAYER = re.compile(r"^(decoder\.layers\.)(\d+)(\..*)$")
_LOCAL_EXPERT = re.compile(r"^(.*\.mlp\.experts\.local_experts\.)(\d+)(\..*)$")


@dataclass(frozen=True)
class ConversionTask:
    """One Megatron parameter of this rank and the mapping that fills it."""

    megatron_name: str  # global (layer numbers across all PP stages)
    local_name: str  # as in chunk.named_parameters()
    chunk: int
    mapping: MegatronParamMapping
    param: torch.nn.Parameter = field(repr=False, compare=False)

    @property
    def hf_names(self) -> list[str]:
        return self.mapping.hf_names()


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    while hasattr(module, "module") and isinstance(module.module, torch.nn.Module):
        module = module.module
    return module


def _expert_parallel() -> tuple[int, int]:
    """(size, rank) of this rank's expert-parallel group; (1, 0) without model-parallel groups."""
    from megatron.core import parallel_state as ps

    if not ps.model_parallel_is_initialized():
        return 1, 0
    return ps.get_expert_model_parallel_world_size(), ps.get_expert_model_parallel_rank()


def is_expert_param(name: str) -> bool:
    """Whether ``name`` belongs to the routed experts (split across expert-parallel ranks)."""
    return ".mlp.experts." in name


def global_name(chunk: torch.nn.Module, local_name: str) -> str:
    """Local parameter name -> global name: each layer's own (global, 1-based) layer_number, and under
    expert parallelism each local expert's global index (EP rank r holds experts r*n .. r*n + n - 1)."""
    m = _LAYER.match(local_name)
    if not m:
        return local_name
    model = _unwrap(chunk)
    layer = model.decoder.layers[int(m.group(2))]
    name = f"{m.group(1)}{layer.layer_number - 1}{m.group(3)}"
    e = _LOCAL_EXPERT.match(name)
    if e is not None:
        size, rank = _expert_parallel()
        if size > 1:
            local_count = model.config.num_moe_experts // size
            name = f"{e.group(1)}{rank * local_count + int(e.group(2))}{e.group(3)}"
    return name


def build_tasks(registry: MegatronMappingRegistry, chunks: Iterable[torch.nn.Module]) -> list[ConversionTask]:
    """Resolve a mapping for every parameter (and mapped buffer) of ``chunks``; unmapped parameters are an error."""
    tasks: list[ConversionTask] = []
    unmapped: list[str] = []
    for i, chunk in enumerate(chunks):
        for local, param in _unwrap(chunk).named_parameters():
            name = global_name(chunk, local)
            mapping = registry.megatron_to_hf_lookup(name)
            if mapping is None:
                unmapped.append(name)
                continue
            tasks.append(ConversionTask(name, local, i, mapping, param))
        # Buffers holding checkpoint state (MoE router.expert_bias) are converted where the table maps them.
        for local, buf in _unwrap(chunk).named_buffers():
            name = global_name(chunk, local)
            mapping = registry.megatron_to_hf_lookup(name)
            if mapping is not None:
                tasks.append(ConversionTask(name, local, i, mapping, buf))  # type: ignore[arg-type]
    if unmapped:
        raise WeightMismatchError(
            f"{len(unmapped)} Megatron parameter(s) have no mapping: {sorted(unmapped)}. "
            "Add them to the family's mapping registry (bridge/models/<family>/bridge.py)."
        )
    return tasks


def _tp_group():
    from megatron.core import parallel_state as ps

    return ps.get_tensor_model_parallel_group(), ps.get_tensor_model_parallel_world_size(), \
        ps.get_tensor_model_parallel_rank()


def _ignored(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _all_ranks_union(names: set[str]) -> set[str]:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return names
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sorted(names))
    out: set[str] = set()
    for part in gathered:
        out.update(part)
    return out


def load_weights(tasks: list[ConversionTask], reader: Any, ctx: MappingContext, *,
                 ignored_hf_patterns: Iterable[str] = ()) -> None:
    """Fill every task's parameter from the HF checkpoint ``reader`` (reads this rank's TP shard only)."""
    available = set(reader.keys())
    needed = {n for t in tasks for n in t.hf_names}
    missing = sorted(needed - available)
    used = _all_ranks_union(needed)
    unexpected = sorted(n for n in available - used if not _ignored(n, ignored_hf_patterns))
    if missing or unexpected:
        raise tensors_mismatch("the HF checkpoint does not match the model", missing, unexpected,
                               fix="Check that config.json describes these weights (layers, tie_word_embeddings, "
                                   "biases).")
    _, tp, rank = _tp_group()
    wrong: list[str] = []
    # Each task reads only this rank's rows/columns of its HF tensors: straight into a CPU parameter, or
    # through reused (pinned) host slots into a device one, reads and transfers overlapping.
    source = SliceReader(reader)
    on_device = any(t.param.device.type != "cpu" for t in tasks)
    with torch.no_grad(), (DeviceUploader() if on_device else contextlib.nullcontext()) as uploader:
        for task in tasks:
            pieces = shard_pieces(task.mapping, ctx, source, tp=tp, rank=rank)
            if pieces.shape != tuple(task.param.shape):
                wrong.append(f"{task.megatron_name}: expected {tuple(task.param.shape)}, "
                             f"found {pieces.shape} from {task.hf_names}")
                continue
            if uploader is not None and task.param.device.type != "cpu":
                uploader.add(pieces, task.param)
            else:
                pieces.read_into(task.param)
            log.debug("import %s <- %s [%s, TP %d/%d] %s", task.megatron_name, task.hf_names,
                      task.mapping.sharding, rank, tp, pieces.shape)
            del pieces
    if wrong:
        raise WeightMismatchError(f"{len(wrong)} shape mismatch(es): " + "; ".join(sorted(wrong)))


def _gather_full(task: ConversionTask, ctx: MappingContext) -> torch.Tensor:
    group, tp, _ = _tp_group()
    local = task.param.detach()
    if tp == 1:
        shards = [local]
    elif local.dim() == 0:
        shards = [torch.empty_like(local) for _ in range(tp)]
        dist.all_gather(shards, local.contiguous(), group=group)
    else:  # gathered into one buffer: a dim-0 merge (column, vocab) is then a view, not another copy
        gathered = torch.empty((tp * local.shape[0], *local.shape[1:]), dtype=local.dtype, device=local.device)
        if gathered.is_cuda:
            dist.all_gather_into_tensor(gathered, local.contiguous(), group=group)
        else:
            dist.all_gather(list(gathered.chunk(tp)), local.contiguous(), group=group)
        shards = list(gathered.chunk(tp))
    # Merged where the parameter lives (on a GPU that is a fraction of the host's time).
    return tp_ops.merge(task.mapping.sharding, shards, name=task.megatron_name, **tp_meta(task.mapping, ctx))


def iter_export(tasks: list[ConversionTask], registry: MegatronMappingRegistry,
                ctx: MappingContext, *, on_host: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(hf_name, tensor)`` on global rank 0, in a fixed order; other ranks send their part.

    Every rank must call this and exhaust the iterator (it drives collectives). Only one
    parameter is in flight at a time, so memory stays bounded by the largest tensor. Gathers, merges
    and the HF transforms run on the parameters' device; ``on_host=False`` yields the tensors there
    too (for a writer that stages them to disk itself), else they are moved to CPU.
    """
    from megatron.core import parallel_state as ps

    world = dist.get_world_size() if dist.is_initialized() else 1
    me = dist.get_rank() if dist.is_initialized() else 0
    dp_rank = ps.get_data_parallel_rank() if world > 1 else 0
    # Routed experts are replicated over the expert-data-parallel ranks, everything else over the data-parallel ones.
    expert_dp_rank = compat.expert_data_parallel_rank() if world > 1 else 0
    mine = {t.megatron_name: t for t in tasks if t.mapping.export}

    def replica(name: str) -> int:
        return expert_dp_rank if is_expert_param(name) else dp_rank

    stacker = ExpertStacker()  # experts stored as one HF tensor (StackedExpertMapping) are written whole

    # Agree on the global order and on who owns each parameter (TP rank 0 of its first replica sends).
    owner_of: dict[str, tuple[int, torch.dtype]] = {}
    if world > 1:
        owners: list[Any] = [None] * world
        tp_rank = ps.get_tensor_model_parallel_rank()
        owned = [(n, t.param.dtype) for n, t in sorted(mine.items()) if replica(n) == 0 and tp_rank == 0]
        dist.all_gather_object(owners, (me, owned))
        for rank, entries in owners:
            for n, dtype in entries:
                owner_of.setdefault(n, (rank, dtype))
    else:
        owner_of = {n: (0, t.param.dtype) for n, t in mine.items()}
    for name in sorted(owner_of):
        owner, dtype = owner_of[name]
        if name in mine and replica(name) == 0:
            task = mine[name]
            full = _gather_full(task, ctx)
            if owner == me and me != 0:
                shape = torch.tensor(list(full.shape) + [-1] * (8 - full.dim()), dtype=torch.long)
                dist.send(_dev(shape), dst=0)
                dist.send(_dev(full.contiguous()), dst=0)
            if me == 0:
                yield from _to_hf(task.mapping, name, full, ctx, source=0, on_host=on_host, stacker=stacker)
            del full  # before the next gather: one gathered parameter on the device at a time
        elif me == 0:
            shape_t = _dev(torch.empty(8, dtype=torch.long))
            dist.recv(shape_t, src=owner)
            buf = _dev(torch.empty([int(s) for s in shape_t.cpu() if s >= 0], dtype=dtype))
            dist.recv(buf, src=owner)
            mapping = registry.megatron_to_hf_lookup(name)
            assert mapping is not None, name
            yield from _to_hf(mapping, name, buf, ctx, source=owner, on_host=on_host, stacker=stacker)
            del buf
    if me == 0:
        stacker.finish()


def _to_hf(mapping: MegatronParamMapping, name: str, full: torch.Tensor, ctx: MappingContext,
           *, source: int, on_host: bool, stacker: ExpertStacker) -> Iterator[tuple[str, torch.Tensor]]:
    for piece_name, piece in mapping.megatron_to_hf(full, ctx).items():
        for hf_name, t in stacker.add(mapping, piece_name, piece):
            log.debug("export %s -> %s %s (from rank %d)", name, hf_name, tuple(t.shape), source)
            yield hf_name, (t.cpu() if on_host else t)


def _dev(t: torch.Tensor) -> torch.Tensor:
    return t.cuda() if torch.cuda.is_available() else t
