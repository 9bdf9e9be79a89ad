"""Which model class wrote a ``torch_dist`` checkpoint, and reading a GPTModel checkpoint into a HybridModel.

A checkpoint's parameter layout is its writer's model class (see :mod:`bridge.hybrid`): GPTModel stores
``decoder.layers.*`` (stacked, the layer an axis, for homogeneous blocks; ``decoder.layers.<i>.*`` otherwise),
HybridModel one ``decoder.layers.<j>.*`` per attention / MLP layer. :func:`writer_model_class` reads it from
mcore-compat's record, or, for a checkpoint Megatron-LM wrote, from its ``args`` (a hybrid run records
``hybrid_layer_pattern``, as Megatron-LM's own loader tells them apart).

:func:`sharded_for_checkpoint` is what a loading model asks the checkpoint for:

* same class: the model's own sharded state dict;
* GPT checkpoint -> HybridModel, per-layer keys (``decoder.layers.<i>.*``: what GPTModel writes for blocks that
  differ, e.g. DeepSeek's leading dense blocks, or any MoE-frequency list): every storage key renamed by the
  bridge's one layout map (:func:`bridge.hybrid.hybrid_to_gpt`), on any release with HybridModel;
* GPT checkpoint -> HybridModel, stacked keys (``decoder.layers.*`` with the layer as an axis: homogeneous
  blocks, Megatron-LM's training format): MCore's own ``gpt_checkpoint_interop`` (0.19+, compat feature
  ``gpt_checkpoint_interop``), which Megatron-LM uses at load time too (the layer index becomes a prepended
  sharding axis); refused where it is absent (0.18). Nothing is rewritten on disk either way;
* Hybrid checkpoint -> GPTModel: refused (MCore's interop goes one way; so does Megatron-LM's).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from bridge import compat
from bridge.errors import CheckpointError
from bridge.hybrid import hybrid_to_gpt
from bridge.megatron_ckpt.args import args_dict

__all__ = ["sharded_for_checkpoint", "writer_model_class"]

_PER_LAYER = re.compile(r"^decoder\.layers\.\d+\.")


def writer_model_class(record: Mapping[str, Any] | None, args: Any = None) -> str:
    """``"gpt"`` or ``"hybrid"``: the model class whose layout the checkpoint holds (see the module docstring)."""
    if record is not None:
        return str(record.get("model_class", "gpt"))
    values = args_dict(args, "the checkpoint's common state") if args is not None else {}
    pattern = values.get("hybrid_layer_pattern") or values.get("hybrid_override_pattern")
    return "hybrid" if pattern else "gpt"


def _stores_per_layer_keys(stored: Collection[str]) -> bool:
    return any(_PER_LAYER.match(key) for key in stored)


def _renamed_to_gpt(sharded: dict[str, Any]) -> None:
    """Every storage key of ``sharded`` (HybridModel names) renamed to its GPTModel name, in place."""
    from megatron.core.dist_checkpointing.dict_utils import dict_list_map_inplace
    from megatron.core.dist_checkpointing.mapping import ShardedBase

    def rename(entry: Any) -> Any:
        if isinstance(entry, ShardedBase):
            entry.key = hybrid_to_gpt(entry.key)
        return entry

    dict_list_map_inplace(rename, sharded)


def sharded_for_checkpoint(chunks: list[Any], sharded: dict[str, Any], *, stored: Collection[str], source: str,
                           target: str, where: str) -> dict[str, Any]:
    """The chunks' sharded state dict ``sharded`` (keyed like ``common.pt``'s model entries) made to read a
    checkpoint of model class ``source`` storing the keys ``stored`` into models of class ``target`` (in place;
    returned)."""
    if source == target:
        return sharded
    if (source, target) != ("gpt", "hybrid"):
        raise CheckpointError(
            f"{where} holds a HybridModel checkpoint, but a GPTModel was built to read it: MCore translates GPT "
            "checkpoints into Hybrid runs, not the reverse. Load it with model_class='hybrid' (or 'auto' where "
            "GPTModel is gone), or export it to HF (export-ckpt) and import that as GPTModel")
    if _stores_per_layer_keys(stored):
        _renamed_to_gpt(sharded)
        return sharded
    installed = compat.installed_version()
    if not compat.has_feature("gpt_checkpoint_interop"):
        raise CheckpointError(
            f"{where} holds a GPTModel checkpoint with stacked layers (decoder.layers.* with the layer as an axis); "
            f"reading it into HybridModel needs MCore's gpt_checkpoint_interop, which megatron-core {installed} "
            "lacks (it arrives in 0.19). Load it with model_class='gpt' here, or under megatron-core 0.19+, or "
            "re-import from HF with model_class='hybrid'")
    from megatron.core.dist_checkpointing.gpt_checkpoint_interop import (
        gpt_compatible_layer_maps,
        retarget_sharded_state_dict_to_gpt_checkpoint,
    )

    for chunk, state in zip(chunks, sharded.values()):
        try:
            maps = gpt_compatible_layer_maps(chunk.hybrid_layer_pattern)
        except ValueError as exc:
            raise CheckpointError(
                f"{where}: megatron-core {installed} cannot read this GPTModel checkpoint into HybridModel ({exc}); "
                "load it with model_class='gpt', or re-import from HF with model_class='hybrid'") from None
        retarget_sharded_state_dict_to_gpt_checkpoint(state, maps)
    return sharded
