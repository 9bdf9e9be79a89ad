"""``bridge.megatron_ckpt.keys``: the one walk over a sharded state dict (``sharded_leaves``: nested mappings and
lists, factories built or kept) and what a model asks a checkpoint for (``expected_entries``); and
``interop.writer_model_class``, which reads the writer's model class from the record or Megatron-LM's args."""

from __future__ import annotations

import argparse

import torch

from bridge.megatron_ckpt.interop import writer_model_class
from bridge.megatron_ckpt.keys import expected_entries, sharded_leaves


def _state() -> tuple[dict, object]:
    from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensor, ShardedTensorFactory

    def build(key, data, replica_id, flattened_range):  # a gated fc1's two halves, as MCore's factory gives them
        gate, up = data.chunk(2)
        return {"gate": ShardedTensor.from_rank_offsets(f"{key}.gate", gate),
                "up": ShardedTensor.from_rank_offsets(f"{key}.up", up)}

    factory = ShardedTensorFactory("fc1", torch.zeros(4, 3), build, lambda parts: torch.cat(list(parts.values())))
    state = {"model": {"embedding": ShardedTensor.from_rank_offsets("emb", torch.zeros(5, 3)),
                       "layers": [factory, {"extra": ShardedObject("layer._extra_state", None, (1,), (0,))}]},
             "iteration": 7}  # common state: not a sharded entry
    return state, factory


def test_leaves_in_order_with_factories_built_or_kept() -> None:
    state, factory = _state()
    assert [e.key for e in sharded_leaves(state)] == ["emb", "fc1.gate", "fc1.up", "layer._extra_state"]
    kept = list(sharded_leaves(state, build_factories=False))
    assert [e.key for e in kept] == ["emb", "fc1", "layer._extra_state"] and kept[1] is factory


def test_expected_entries_give_global_shapes_and_none_for_objects() -> None:
    state, _ = _state()
    assert expected_entries(state) == {"emb": (5, 3), "fc1.gate": (2, 3), "fc1.up": (2, 3),
                                       "layer._extra_state": None}


def test_writer_model_class_from_the_record_or_megatron_lm_args() -> None:
    assert writer_model_class({"model_class": "hybrid"}) == "hybrid"
    assert writer_model_class({}) == "gpt"  # records from before model_class was written
    assert writer_model_class(None, argparse.Namespace(hybrid_layer_pattern="*-*E")) == "hybrid"
    assert writer_model_class(None, {"hybrid_override_pattern": "*-"}) == "hybrid"  # the older name
    assert writer_model_class(None, argparse.Namespace(hybrid_layer_pattern=None)) == "gpt"
    assert writer_model_class(None) == "gpt"
