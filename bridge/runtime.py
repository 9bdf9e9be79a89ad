"""Process groups for building models: torchrun-aware, single-process by default.

``ensure_model_parallel(tp, pp)`` initialises ``torch.distributed`` when nobody has
(``env://`` under torchrun, else a single-process group on a free local port), with
``gloo`` on machines without CUDA and ``nccl`` with it, then MCore's model-parallel
groups. It is idempotent and refuses a mismatch with groups already in place.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist

from bridge import cpu
from bridge._logging import get_logger
from bridge.errors import ParallelLayoutError

__all__ = ["ensure_model_parallel", "default_backend", "reset_model_parallel"]

log = get_logger("runtime")

# The process groups MCore's initialize_model_parallel made through us: destroyed again by reset_model_parallel.
# MCore's destroy_model_parallel only drops its references, and every gloo group keeps its own threads
# (pt_gloo_runloop, gloo_tcp_loop) alive, so a process that builds many models ran thousands of them.
_OUR_GROUPS: list[dist.ProcessGroup] = []


def _live_groups() -> set[dist.ProcessGroup]:
    return set(dist.distributed_c10d._world.pg_map)


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init_process_group() -> None:
    backend = default_backend()
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, init_method="env://")
    else:
        dist.init_process_group(
            backend=backend, init_method=f"tcp://127.0.0.1:{_free_port()}", world_size=1, rank=0
        )
    log.debug("initialised torch.distributed: backend=%s world_size=%d", backend, dist.get_world_size())


def ensure_model_parallel(tp: int, pp: int, *, ep: int = 1, vpp: int | None = None, seed: int = 1234) -> None:
    """Make sure ``torch.distributed`` and MCore's TP x PP (x EP) groups exist and match ``tp``, ``pp``, ``ep``,
    and the virtual pipeline size ``vpp`` (None: no virtual pipeline)."""
    from megatron.core import parallel_state as ps

    if not dist.is_initialized():
        _init_process_group()
    world = dist.get_world_size()
    if world % (tp * pp) or (world // (tp * pp)) % ep:
        raise ParallelLayoutError(
            f"expected a world size divisible by TP x PP = {tp} x {pp} whose data-parallel size "
            f"({world} // {tp * pp}) is divisible by EP = {ep}, found {world} processes; launch with "
            f"torchrun --nproc-per-node={tp * pp * ep} (or a multiple)"
        )
    if ps.model_parallel_is_initialized():
        have = (ps.get_tensor_model_parallel_world_size(), ps.get_pipeline_model_parallel_world_size(),
                ps.get_expert_model_parallel_world_size(), ps.get_virtual_pipeline_model_parallel_world_size())
        if have != (tp, pp, ep, vpp):
            raise ParallelLayoutError(
                f"model-parallel groups already exist with TP x PP x EP = {have[0]} x {have[1]} x {have[2]} (virtual "
                f"pipeline {have[3]}), but {tp} x {pp} x {ep} (virtual pipeline {vpp}) was asked for; call "
                "bridge.runtime.reset_model_parallel() first"
            )
    else:
        before = _live_groups()
        ps.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                     expert_model_parallel_size=ep, virtual_pipeline_model_parallel_size=vpp)
        _OUR_GROUPS.extend(g for g in _live_groups() - before if g is not dist.GroupMember.WORLD)
        log.debug("initialised MCore model parallel: TP=%d PP=%d EP=%d", tp, pp, ep)
    cpu.apply(seed)
    if not cpu.needs_cpu_patches():
        from megatron.core import tensor_parallel

        tensor_parallel.model_parallel_cuda_manual_seed(seed)


def reset_model_parallel() -> None:
    """Tear down MCore's model-parallel groups, and the process groups made for them (the default group stays)."""
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    while _OUR_GROUPS:
        group = _OUR_GROUPS.pop()
        if group in _live_groups():
            dist.destroy_process_group(group)
