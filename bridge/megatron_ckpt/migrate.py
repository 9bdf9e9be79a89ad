"""``migrate-ckpt``: rewrite a ``torch_dist`` checkpoint written under one megatron-core so another one loads it.

Runs under the TARGET release (``mcore-compat migrate-ckpt SRC DST --to X`` starts it there). The model is
built here from the checkpoint's own record (optionally as another model class, ``model_class="hybrid"``),
and the storage key of every entry of its sharded state dict that the checkpoint lacks is pointed at the
key the checkpoint stores it under:

* GPT layout -> ``HybridModel`` (MCore 0.19+, feature ``gpt_checkpoint_interop``): MCore's own
  ``retarget_sharded_state_dict_to_gpt_checkpoint`` (homogeneous ``decoder.layers.*`` with the layer as an
  axis -> one ``decoder.layers.<i>.*`` per attention / MLP layer; ``final_layernorm`` -> ``final_norm``);
* renamed keys (:data:`KEY_RENAMES`, data; :func:`to_new_key` and its inverse :func:`to_old_key`);
* ``_extra_state`` entries absent from the checkpoint keep the freshly built value; stored ones no model
  key asks for are dropped.

Then every tensor the model needs must be found with its shape (:func:`bridge.megatron_ckpt.keys.key_diff`),
else :class:`~bridge.errors.CheckpointError` names both releases and the first key that differs. The model is
loaded and saved with the bridge's ``torch_dist`` writer (:func:`~bridge.megatron_ckpt.writer.save_megatron_model`,
through :class:`~bridge.checkpoint.atomic.AtomicDirectory`): ``DST`` must not exist, whatever it holds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from bridge import compat
from bridge._logging import get_logger
from bridge.errors import BridgeError, CheckpointError

__all__ = ["KEY_RENAMES", "KeyRename", "Migration", "main", "migrate_checkpoint", "to_new_key", "to_old_key"]

log = get_logger("megatron_ckpt.migrate")


@dataclass(frozen=True)
class KeyRename:
    """A storage-key fragment that one layout calls ``old`` and another ``new``."""

    old: str
    new: str
    why: str


KEY_RENAMES: tuple[KeyRename, ...] = (
    KeyRename("decoder.final_layernorm.", "decoder.final_norm.",
              "GPTModel's TransformerBlock names its last norm final_layernorm; HybridModel's stack final_norm"),
    KeyRename("self_attention.kv_layernorm.weight", "self_attention.linear_kv_up_proj.layer_norm_weight",
              "MLA without a query LoRA (DeepSeek-V2): up to 0.18 a separate kv_layernorm; 0.19's MLA norm resolver "
              "(transformer/mla_qk_norm_config.py) takes the KV norm only fused into linear_kv_up_proj "
              "(bridge/models/_mla_spec.py); found by the ckpt_compat grid: 0.14.0-0.18.2 checkpoints fail on 0.19.x"),
)


def to_new_key(key: str, renames: tuple[KeyRename, ...] = KEY_RENAMES) -> str:
    """``key`` with every ``old`` fragment replaced by its ``new`` one."""
    for r in renames:
        key = key.replace(r.old, r.new)
    return key


def to_old_key(key: str, renames: tuple[KeyRename, ...] = KEY_RENAMES) -> str:
    """The inverse of :func:`to_new_key`."""
    for r in reversed(renames):
        key = key.replace(r.new, r.old)
    return key


@dataclass(frozen=True)
class Migration:
    """What :func:`migrate_checkpoint` did: the releases, the model classes, the keys it retargeted."""

    source: Path
    target: Path
    writer: str
    release: str
    source_class: str
    target_class: str
    retargeted: int
    interop: bool

    def summary(self) -> str:
        how = "MCore's GPT -> HybridModel retargeting" if self.interop else "key renames"
        return (f"{self.source} (megatron-core {self.writer}, {self.source_class}) -> {self.target} "
                f"(megatron-core {self.release}, {self.target_class}): {self.retargeted} storage keys moved ({how})")


def _entries(sharded: Any) -> list[Any]:
    from bridge.megatron_ckpt.keys import sharded_leaves

    return list(sharded_leaves(sharded, build_factories=False))


def _retarget(sharded: dict[str, Any], stored: Mapping[str, Any], *, interop_pattern: str | None) -> int:
    """Point the storage keys of ``sharded`` (in place) at what the checkpoint stores; how many moved."""
    before = {id(e): e.key for e in _entries(sharded)}
    if interop_pattern is not None:
        from megatron.core.dist_checkpointing.gpt_checkpoint_interop import (
            gpt_compatible_layer_maps,
            retarget_sharded_state_dict_to_gpt_checkpoint,
        )

        for chunk in sharded.values():
            retarget_sharded_state_dict_to_gpt_checkpoint(chunk, gpt_compatible_layer_maps(interop_pattern))
    for entry in _entries(sharded):
        base = entry.key
        if base not in stored and to_old_key(base) in stored:
            entry.key = to_old_key(base)
    return sum(1 for e in _entries(sharded) if id(e) in before and before[id(e)] != e.key)


def migrate_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, to_release: str,
                       model_class: str | None = None, durable: bool = True,
                       trust_remote_code: bool | None = None) -> Migration:
    """Rewrite the checkpoint at ``src`` into ``dst`` for the installed megatron-core ``to_release``."""
    from bridge.auto_bridge import AutoBridge
    from bridge.checkpoint.atomic import AtomicDirectory
    from bridge.megatron_ckpt.api import provider_for_checkpoint
    from bridge.megatron_ckpt.keys import key_diff, stored_entries
    from bridge.megatron_ckpt.layout import locate, read_record
    from bridge.megatron_ckpt.reader import check_files, load_into
    from bridge.megatron_ckpt.writer import model_state_keys, save_megatron_model
    from bridge.runtime import reset_model_parallel

    installed = str(compat.installed_version())
    if Version(to_release).release != Version(installed).release:
        raise CheckpointError(f"migrate-ckpt --to {to_release} runs under megatron-core {to_release}, but this process "
                              f"has {installed}; run `mcore-compat migrate-ckpt SRC DST --to {to_release}`, which "
                              "starts it under the target release")
    AtomicDirectory(dst, overwrite=False, durable=False).abort()  # the guard, before any work
    dirs = locate(src)
    record = read_record(dirs)
    if record is None:
        raise CheckpointError(f"{dirs.root} has no mcore_compat.json: migrate-ckpt needs the writer's record "
                              "(checkpoints written by import-ckpt or save_megatron_model)")
    check_files(dirs)
    writer = record["mcore_version"]
    reset_model_parallel()
    try:
        _, provider = provider_for_checkpoint(dirs, record, open_bridge=AutoBridge.from_hf_pretrained,
                                              trust_remote_code=trust_remote_code)
        if model_class is not None:
            provider.model_class = model_class
        provider.finalize()
        chunks = provider.provide_distributed_model()
    except BridgeError as exc:
        raise CheckpointError(f"{dirs.root} was written by megatron-core {writer}; its model cannot be built under "
                              f"megatron-core {installed} to migrate it: {exc}") from exc
    target_class = provider.resolved_model_class()
    sharded = {key: chunk.sharded_state_dict() for key, chunk in zip(model_state_keys(len(chunks)), chunks)}
    stored = stored_entries(dirs.iteration_dir)
    interop = record["model_class"] == "gpt" and target_class == "hybrid"
    if interop and not compat.has_feature("gpt_checkpoint_interop"):
        raise CheckpointError(f"{dirs.root} (megatron-core {writer}) holds a GPTModel checkpoint; megatron-core "
                              f"{installed} has no gpt_checkpoint_interop to move it to HybridModel (0.19+)")
    moved = _retarget(sharded, stored, interop_pattern=chunks[0].hybrid_layer_pattern if interop else None)
    diff = key_diff(dirs.iteration_dir, sharded).tensors_only()
    if diff.missing or diff.shapes:
        raise CheckpointError(
            f"{dirs.root} was written by megatron-core {writer} ({record['model_class']}) and cannot be migrated to "
            f"megatron-core {installed} ({target_class}): first differing key: {diff.first()}. No known rename or "
            "move maps it; re-import the model from HF under the target release (mcore-compat import-ckpt)"
        )
    load_into(dirs, chunks, sharded)
    out = save_megatron_model(chunks, dst, provider=provider, architecture=record["architecture"],
                              hf_source=dirs.hf_dir if dirs.hf_dir.is_dir() else None, durable=durable)
    done = Migration(dirs.root, out, writer, installed, record["model_class"], target_class, moved, interop)
    log.info("%s", done.summary())
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m bridge.megatron_ckpt.migrate SRC DST --to X``, under megatron-core X."""
    ap = argparse.ArgumentParser(prog="python -m bridge.megatron_ckpt.migrate", description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--to", required=True, dest="to_release")
    ap.add_argument("--model-class", choices=("gpt", "hybrid"))
    ap.add_argument("--trust-remote-code", action="store_true")
    args = ap.parse_args(argv)
    try:
        done = migrate_checkpoint(args.src, args.dst, to_release=args.to_release, model_class=args.model_class,
                                  trust_remote_code=args.trust_remote_code or None)
    except CheckpointError as exc:
        sys.stderr.write(f"migrate-ckpt: {exc}\n")
        return 1
    sys.stdout.write(done.summary() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
