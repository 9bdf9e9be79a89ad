"""Mappings that fuse several HF tensors into one Megatron parameter."""

from __future__ import annotations

from typing import Mapping

import torch

from bridge import transforms
from bridge.errors import MappingError
from bridge.mappings.base import MappingContext, MegatronParamMapping

__all__ = ["QKVMapping", "GatedMLPMapping", "ConcatenatedQKVMapping"]


class QKVMapping(MegatronParamMapping):
    """HF ``q``, ``k``, ``v`` <-> Megatron ``linear_qkv`` (per-query-group interleave; any GQA)."""

    kind = "qkv"

    def __init__(self, megatron_param: str, *, q: str, k: str, v: str, export: bool = True):
        super().__init__(megatron_param, {"q": q, "k": k, "v": v}, sharding="qkv", export=export)

    def hf_to_megatron(self, hf: Mapping[str, torch.Tensor], ctx: MappingContext) -> torch.Tensor:
        names = self.hf_param
        assert isinstance(names, dict)
        return transforms.interleave_qkv(
            hf[names["q"]], hf[names["k"]], hf[names["v"]],
            num_query_groups=ctx.num_query_groups, head_dim=ctx.head_dim,
        )

    def megatron_to_hf(self, tensor: torch.Tensor, ctx: MappingContext) -> dict[str, torch.Tensor]:
        names = self.hf_param
        assert isinstance(names, dict)
        q, k, v = transforms.split_qkv(
            tensor, num_attention_heads=ctx.num_attention_heads,
            num_query_groups=ctx.num_query_groups, head_dim=ctx.head_dim,
        )
        return {names["q"]: q, names["k"]: k, names["v"]: v}


class ConcatenatedQKVMapping(MegatronParamMapping):
    """One HF tensor holding ``[all q; all k; all v]`` <-> Megatron ``linear_qkv``."""

    kind = "qkv_concat"

    def __init__(self, megatron_param: str, hf_param: str, *, export: bool = True):
        if not isinstance(hf_param, str):
            raise MappingError(f"ConcatenatedQKVMapping maps one HF tensor, found {hf_param!r}")
        super().__init__(megatron_param, hf_param, sharding="qkv", export=export)

    def hf_to_megatron(self, hf: Mapping[str, torch.Tensor], ctx: MappingContext) -> torch.Tensor:
        assert isinstance(self.hf_param, str)
        q, k, v = transforms.unconcat_qkv(
            hf[self.hf_param], num_attention_heads=ctx.num_attention_heads,
            num_query_groups=ctx.num_query_groups, head_dim=ctx.head_dim,
        )
        return transforms.interleave_qkv(q, k, v, num_query_groups=ctx.num_query_groups, head_dim=ctx.head_dim)

    def megatron_to_hf(self, tensor: torch.Tensor, ctx: MappingContext) -> dict[str, torch.Tensor]:
        assert isinstance(self.hf_param, str)
        q, k, v = transforms.split_qkv(
            tensor, num_attention_heads=ctx.num_attention_heads,
            num_query_groups=ctx.num_query_groups, head_dim=ctx.head_dim,
        )
        return {self.hf_param: transforms.concat_qkv(q, k, v)}


class GatedMLPMapping(MegatronParamMapping):
    """HF ``gate``, ``up`` <-> Megatron ``linear_fc1`` = ``[gate; up]`` (TP rank r: ``[gate_r; up_r]``)."""

    kind = "gated"

    def __init__(self, megatron_param: str, *, gate: str, up: str, export: bool = True):
        super().__init__(megatron_param, {"gate": gate, "up": up}, sharding="gated", export=export)

    def hf_to_megatron(self, hf: Mapping[str, torch.Tensor], ctx: MappingContext) -> torch.Tensor:
        names = self.hf_param
        assert isinstance(names, dict)
        return transforms.fuse_gate_up(hf[names["gate"]], hf[names["up"]])

    def megatron_to_hf(self, tensor: torch.Tensor, ctx: MappingContext) -> dict[str, torch.Tensor]:
        names = self.hf_param
        assert isinstance(names, dict)
        gate, up = transforms.split_gate_up(tensor)
        return {names["gate"]: gate, names["up"]: up}
