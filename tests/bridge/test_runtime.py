"""bridge.runtime: model-parallel groups are made and torn down without leaking process groups."""

from __future__ import annotations

import os

import torch.distributed as dist


def _gloo_threads() -> int:
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return sum(name.startswith(("pt_gloo", "gloo_")) for name in names)


def test_reset_destroys_the_groups_it_made(fresh_parallel_state) -> None:
    # MCore's destroy_model_parallel only drops its references: each gloo group kept 3 threads alive, and a
    # test worker that built ~1000 models ran ~3900 threads (load average 300+ on 2 cores).
    from bridge.runtime import ensure_model_parallel, reset_model_parallel

    ensure_model_parallel(1, 1)
    reset_model_parallel()
    groups, threads = len(dist.distributed_c10d._world.pg_map), _gloo_threads()
    for _ in range(5):
        ensure_model_parallel(1, 1)
        assert len(dist.distributed_c10d._world.pg_map) > groups  # MCore's groups exist while in use
        reset_model_parallel()
    assert len(dist.distributed_c10d._world.pg_map) == groups
    assert _gloo_threads() == threads
    assert dist.is_initialized()  # the default group stays
