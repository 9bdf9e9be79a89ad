"""Parameter mappings: one Megatron parameter <-> one or more HF tensors.

A mapping works on *full* (TP-unsharded) Megatron tensors with *global* layer
numbers; its ``sharding`` names how :mod:`bridge.parallel.tp` splits the full
tensor across tensor-parallel ranks. Patterns may hold ``*`` wildcards, each
matching one integer index (a layer or an expert); the Megatron pattern and every
HF pattern must hold the same number of wildcards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch

from bridge.errors import MappingError

__all__ = [
    "MappingContext",
    "MegatronParamMapping",
    "AutoMapping",
    "ColumnParallelMapping",
    "RowParallelMapping",
    "ReplicatedMapping",
    "detect_sharding",
]

_WILDCARD = "*"


@dataclass(frozen=True)
class MappingContext:
    """Model facts a transform needs (filled from the provider)."""

    num_attention_heads: int = 1
    num_query_groups: int = 1
    head_dim: int = 1
    vocab_size: int = 0
    make_vocab_size_divisible_by: int = 1


# Suffix of a Megatron parameter name -> how it is split across TP ranks in MCore's local layer
# spec (the one the bridge builds). Data, not code: AutoMapping consults it; the first matching
# suffix wins. tests/bridge/test_mappings.py reads every row back from MCore's own modules.
# * linear_fc1 is "column" for a plain MLP; a gated (GLU) MLP's fc1 weight and bias hold
#   [gate; up] (MCore: partition_stride 2) and need "gated": GatedMLPMapping says so.
# * MLA's down projections are ColumnParallelLinear in the local spec (the output is gathered
#   after the matmul), hence "column"; Transformer Engine's spec builds them as
#   TELinear(parallel_mode="duplicated"), i.e. replicated: a TE bridge must map them replicated.
# * Row-parallel biases (linear_proj, linear_fc2) are added after the all-reduce: replicated.
_SHARDING_BY_SUFFIX: tuple[tuple[str, str], ...] = (
    ("word_embeddings.weight", "vocab"),
    ("output_layer.weight", "vocab"),
    ("linear_qkv.weight", "qkv"),
    ("linear_qkv.bias", "qkv"),
    ("linear_proj.weight", "row"),
    ("linear_fc2.weight", "row"),
    ("linear_proj.bias", "replicated"),
    ("linear_fc2.bias", "replicated"),
    ("linear_fc1.weight", "column"),
    ("linear_fc1.bias", "column"),
    ("linear_q_proj.weight", "column"),
    ("linear_q_up_proj.weight", "column"),
    ("linear_kv_up_proj.weight", "column"),
    ("linear_q_down_proj.weight", "column"),
    ("linear_kv_down_proj.weight", "column"),
    ("router.weight", "replicated"),
    ("router.bias", "replicated"),
    ("router.expert_bias", "replicated"),
    ("norm.weight", "replicated"),
    ("layernorm.bias", "replicated"),
    ("layer_norm_weight", "replicated"),
    ("layer_norm_bias", "replicated"),
)


def detect_sharding(megatron_name: str) -> str:
    """The TP sharding kind of a Megatron parameter, from its name."""
    for suffix, kind in _SHARDING_BY_SUFFIX:
        if megatron_name.endswith(suffix):
            return kind
    raise MappingError(
        f"cannot tell how {megatron_name!r} is split across tensor-parallel ranks: "
        f"its name ends in none of {sorted(s for s, _ in _SHARDING_BY_SUFFIX)}. "
        "Use ColumnParallelMapping, RowParallelMapping or ReplicatedMapping to say it explicitly."
    )


def _count(pattern: str) -> int:
    return pattern.count(_WILDCARD)


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(pattern).replace(r"\*", r"(\d+)") + "$")


def _fill(pattern: str, captures: tuple[str, ...]) -> str:
    parts = pattern.split(_WILDCARD)
    assert len(parts) == len(captures) + 1, (pattern, captures)
    out = [parts[0]]
    for cap, part in zip(captures, parts[1:]):
        out += [cap, part]
    return "".join(out)


class MegatronParamMapping:
    """Base of every mapping: validated patterns, wildcard matching, and resolution.

    Subclasses set ``sharding`` (or detect it) and implement :meth:`hf_to_megatron`
    and :meth:`megatron_to_hf`, which must be inverses of each other.
    """

    kind: ClassVar[str] = "base"

    def __init__(
        self,
        megatron_param: str,
        hf_param: str | Mapping[str, str],
        *,
        sharding: str | None = None,
        export: bool = True,
    ) -> None:
        self.megatron_param = megatron_param
        self.hf_param: str | dict[str, str] = hf_param if isinstance(hf_param, str) else dict(hf_param)
        self.export = export
        self._validate()
        self.sharding = sharding or detect_sharding(megatron_param.replace(_WILDCARD, "0"))
        self._megatron_re = _regex(megatron_param)

    # -- validation --------------------------------------------------------------------------
    def _validate(self) -> None:
        if not self.hf_names() or not all(isinstance(n, str) and n for n in (self.megatron_param, *self.hf_names())):
            raise MappingError(f"{type(self).__name__} needs a Megatron name and HF names, found "
                               f"{self.megatron_param!r} and {self.hf_param!r}")
        n = _count(self.megatron_param)
        for hf in self.hf_names():
            if _count(hf) != n:
                raise MappingError(
                    f"wildcard counts differ: Megatron pattern {self.megatron_param!r} has {n} '*', "
                    f"HF pattern {hf!r} has {_count(hf)}. Each '*' stands for one index (layer, expert) "
                    "and must appear on both sides the same number of times."
                )

    # -- names -------------------------------------------------------------------------------
    def hf_names(self) -> list[str]:
        """HF names (patterns) in a fixed order."""
        return [self.hf_param] if isinstance(self.hf_param, str) else list(self.hf_param.values())

    @property
    def is_pattern(self) -> bool:
        return _WILDCARD in self.megatron_param

    def match_megatron(self, name: str) -> tuple[str, ...] | None:
        m = self._megatron_re.match(name)
        return m.groups() if m else None

    def match_hf(self, name: str) -> tuple[str, ...] | None:
        for hf in self.hf_names():
            m = _regex(hf).match(name)
            if m:
                return m.groups()
        return None

    def resolve(self, captures: tuple[str, ...]) -> "MegatronParamMapping":
        """A copy with every wildcard replaced by ``captures`` (in order)."""
        hf = (
            _fill(self.hf_param, captures)
            if isinstance(self.hf_param, str)
            else {k: _fill(v, captures) for k, v in self.hf_param.items()}
        )
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.megatron_param = _fill(self.megatron_param, captures)
        clone.hf_param = hf
        clone._megatron_re = _regex(clone.megatron_param)
        return clone

    # -- conversion --------------------------------------------------------------------------
    def hf_to_megatron(self, hf: Mapping[str, torch.Tensor], ctx: MappingContext) -> torch.Tensor:
        raise NotImplementedError

    def megatron_to_hf(self, tensor: torch.Tensor, ctx: MappingContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.megatron_param!r} <-> {self.hf_param!r}, sharding={self.sharding!r})"


class _DirectMapping(MegatronParamMapping):
    """One HF tensor, same values and shape on both sides."""

    def __init__(self, megatron_param: str, hf_param: str, *, sharding: str | None = None, export: bool = True):
        if not isinstance(hf_param, str):
            raise MappingError(f"{type(self).__name__} maps one HF tensor, found {hf_param!r}")
        super().__init__(megatron_param, hf_param, sharding=sharding, export=export)

    def hf_to_megatron(self, hf: Mapping[str, torch.Tensor], ctx: MappingContext) -> torch.Tensor:
        return hf[self.hf_param]

    def megatron_to_hf(self, tensor: torch.Tensor, ctx: MappingContext) -> dict[str, torch.Tensor]:
        return {self.hf_param: tensor}


class AutoMapping(_DirectMapping):
    """Direct mapping whose TP sharding is detected from the Megatron name."""

    kind = "auto"


class ColumnParallelMapping(_DirectMapping):
    kind = "column"

    def __init__(self, megatron_param: str, hf_param: str, *, export: bool = True):
        super().__init__(megatron_param, hf_param, sharding="column", export=export)


class RowParallelMapping(_DirectMapping):
    kind = "row"

    def __init__(self, megatron_param: str, hf_param: str, *, export: bool = True):
        super().__init__(megatron_param, hf_param, sharding="row", export=export)


class ReplicatedMapping(_DirectMapping):
    kind = "replicated"

    def __init__(self, megatron_param: str, hf_param: str, *, export: bool = True):
        super().__init__(megatron_param, hf_param, sharding="replicated", export=export)
