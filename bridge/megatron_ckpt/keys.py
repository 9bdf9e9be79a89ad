"""What a ``torch_dist`` checkpoint stores against what a built model asks for: keys, shapes, ``_extra_state``.

:func:`key_diff` compares the checkpoint's tensor index (``.metadata``) with a model's sharded state dict
(factories built): tensors the model needs that are absent (``missing``), stored entries no model key asks
for (``unexpected``; the common state excluded), and global shape mismatches. Sharded objects (``_extra_state``)
are compared by their key without the ``/shard_<offset>_<shape>`` suffix. Everything is reported sorted, and
:meth:`KeyDiff.first` names the first difference, the way a cell of the checkpoint matrix and ``migrate-ckpt``'s
errors show it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["COMMON_PREFIX", "ExpectedTensor", "KeyDiff", "expected_by_model", "expected_entries", "key_diff",
           "sharded_leaves", "stored_entries"]

#: DCP items under this prefix hold the common state (0.17+), not model tensors.
COMMON_PREFIX = "common_state"
_EXTRA = "_extra_state"


@dataclass(frozen=True)
class KeyDiff:
    """Sorted differences between a checkpoint and a model (see the module docstring)."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    shapes: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = field(default=())  # key, stored, expected

    @property
    def empty(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes)

    def tensors_only(self) -> KeyDiff:
        """The differences without ``_extra_state`` entries (which the bridge's reader tolerates)."""
        return KeyDiff(tuple(k for k in self.missing if not k.endswith(_EXTRA)),
                       tuple(k for k in self.unexpected if not k.endswith(_EXTRA)), self.shapes)

    def first(self) -> str:
        """The first difference in words ("" when there is none)."""
        diff = self.tensors_only()
        if diff.missing:
            return f"missing {diff.missing[0]!r} (and {len(diff.missing) - 1} more)"
        if diff.shapes:
            key, stored, expected = diff.shapes[0]
            return f"shape of {key!r}: stored {list(stored)}, expected {list(expected)}"
        if diff.unexpected:
            return f"unexpected {diff.unexpected[0]!r} (and {len(diff.unexpected) - 1} more)"
        return ""

    def extra_state_notes(self) -> list[str]:
        """One note per kind of ``_extra_state`` difference (absent from the checkpoint, or not asked for)."""
        notes = []
        absent = [k for k in self.missing if k.endswith(_EXTRA)]
        surplus = [k for k in self.unexpected if k.endswith(_EXTRA)]
        if absent:
            notes.append(f"{len(absent)} _extra_state entries absent from the checkpoint, e.g. {absent[0]!r}")
        if surplus:
            notes.append(f"{len(surplus)} _extra_state entries stored but not asked for, e.g. {surplus[0]!r}")
        return notes


def stored_entries(iteration_dir: Path) -> dict[str, tuple[int, ...] | None]:
    """key -> global shape (None for byte objects) of what the checkpoint's tensor index holds."""
    from torch.distributed.checkpoint import FileSystemReader

    index = FileSystemReader(str(iteration_dir)).read_metadata()
    out: dict[str, tuple[int, ...] | None] = {}
    for key, meta in index.state_dict_metadata.items():
        if key.startswith(COMMON_PREFIX):
            continue
        size = getattr(meta, "size", None)
        out[key.split("/shard_")[0]] = tuple(size) if size is not None else None
    return out


def sharded_leaves(sharded: Any, *, build_factories: bool = True) -> Iterator[Any]:
    """Every ``ShardedBase`` entry of a (nested) sharded state dict, in order; a ``ShardedTensorFactory`` is
    built into its entries (e.g. gated fc1: its gate and up halves) unless ``build_factories`` is False. The one
    walk the writer's record, the reader's shape check, :func:`key_diff` and ``migrate-ckpt`` share."""
    from megatron.core.dist_checkpointing.mapping import ShardedBase, ShardedTensorFactory

    if build_factories and isinstance(sharded, ShardedTensorFactory):
        yield from sharded_leaves(sharded.build())
    elif isinstance(sharded, ShardedBase):
        yield sharded
    elif isinstance(sharded, Mapping):
        for value in sharded.values():
            yield from sharded_leaves(value, build_factories=build_factories)
    elif isinstance(sharded, (list, tuple)):
        for value in sharded:
            yield from sharded_leaves(value, build_factories=build_factories)


def expected_entries(sharded: Mapping[str, Any]) -> dict[str, tuple[int, ...] | None]:
    """key -> global shape (None for sharded objects) of a sharded state dict, factories built."""
    from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensor

    return {e.key: tuple(e.global_shape) if isinstance(e, ShardedTensor) else None
            for e in sharded_leaves(sharded) if isinstance(e, (ShardedTensor, ShardedObject))}


def key_diff(iteration_dir: Path, sharded: Mapping[str, Any]) -> KeyDiff:
    """The differences between the checkpoint in ``iteration_dir`` and the model's sharded state dict."""
    stored, expected = stored_entries(Path(iteration_dir)), expected_entries(sharded)
    shapes = tuple((k, stored[k], expected[k]) for k in sorted(expected.keys() & stored.keys())
                   if stored[k] is not None and expected[k] is not None and stored[k] != expected[k])
    return KeyDiff(missing=tuple(sorted(expected.keys() - stored.keys())),
                   unexpected=tuple(sorted(stored.keys() - expected.keys())), shapes=shapes)


@dataclass(frozen=True)
class ExpectedTensor:
    """What a model saves under one sharded key: its global ``shape`` (None where MCore accepts any stored shape,
    ``allow_shape_mismatch``: the vocabulary, whose padding a Megatron-LM run may have chosen otherwise) and the
    ``dtype`` the model holds it in (MCore keeps some tensors, e.g. norms, in float32 under a bf16 model)."""

    shape: tuple[int, ...] | None
    dtype: Any


def expected_by_model(provider: Any) -> dict[str, ExpectedTensor]:
    """Every tensor the model of ``provider`` (TP = PP = 1) saves, from the model built on the meta device
    (``use_cpu_initialization``, so no host or device memory): the keys, shapes and dtypes the model-built routes
    read and write. ``provider`` is left as it was; the model-parallel state is set up as for building."""
    import copy

    import torch
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    from bridge import runtime

    meta = copy.copy(provider)
    meta.__dict__.pop("_finalized", None)
    object.__setattr__(meta, "config_overrides", {**provider.config_overrides, "use_cpu_initialization": True})
    meta.finalize()
    runtime.ensure_model_parallel(1, 1, ep=1, vpp=None, seed=1234)
    with torch.device("meta"):
        chunk = meta.provide(pre_process=True, post_process=True)
    return {e.key: ExpectedTensor(None if e.allow_shape_mismatch else tuple(e.global_shape), e.data.dtype)
            for e in sharded_leaves(chunk.sharded_state_dict()) if isinstance(e, ShardedTensor)}

