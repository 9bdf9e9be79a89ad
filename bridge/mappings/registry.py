"""A family's mapping table: data in, lookups both ways out (the inverse is derived)."""

from __future__ import annotations

from typing import Iterable, Iterator

from bridge.errors import MappingError
from bridge.mappings.base import MegatronParamMapping

__all__ = ["MegatronMappingRegistry"]


class MegatronMappingRegistry:
    """An ordered table of :class:`MegatronParamMapping`.

    Exact names are looked up in a dict; wildcard patterns are tried in order.
    The HF -> Megatron direction is derived from the same table, never written twice.
    """

    def __init__(self, *mappings: MegatronParamMapping) -> None:
        seen: dict[str, MegatronParamMapping] = {}
        for m in mappings:
            if not isinstance(m, MegatronParamMapping):
                raise MappingError(f"expected MegatronParamMapping instances, found {type(m).__name__}: {m!r}")
            if m.megatron_param in seen:
                raise MappingError(
                    f"two mappings for Megatron parameter {m.megatron_param!r}: {seen[m.megatron_param]!r} "
                    f"and {m!r}; keep one"
                )
            seen[m.megatron_param] = m
        self._mappings: tuple[MegatronParamMapping, ...] = tuple(mappings)
        self._exact = {m.megatron_param: m for m in mappings if not m.is_pattern}
        self._patterns = [m for m in mappings if m.is_pattern]

    def __iter__(self) -> Iterator[MegatronParamMapping]:
        return iter(self._mappings)

    def __len__(self) -> int:
        return len(self._mappings)

    def megatron_to_hf_lookup(self, megatron_name: str) -> MegatronParamMapping | None:
        """The mapping for a global Megatron parameter name, wildcards resolved; ``None`` if unmapped."""
        exact = self._exact.get(megatron_name)
        if exact is not None:
            return exact
        for m in self._patterns:
            caps = m.match_megatron(megatron_name)
            if caps is not None:
                return m.resolve(caps)
        return None

    def hf_to_megatron_lookup(self, hf_name: str) -> MegatronParamMapping | None:
        """The (resolved) mapping that consumes an HF tensor name; ``None`` if no mapping does."""
        for m in (*self._exact.values(), *self._patterns):  # exact names beat patterns
            caps = m.match_hf(hf_name)
            if caps is not None and (not caps or m.resolve(caps).megatron_param not in self._exact):
                return m.resolve(caps) if caps else m
        return None

    def with_mappings(self, mappings: Iterable[MegatronParamMapping]) -> "MegatronMappingRegistry":
        """A new registry with ``mappings`` appended."""
        return MegatronMappingRegistry(*self._mappings, *mappings)
