"""Does a tensor-parallel size fit a whole model? One error for every parameter that cannot be
split, naming the numbers, and the TP sizes that would fit every parameter.

Each sharding kind's ``shard_shape`` holds its own rule (``qkv``: ``num_query_groups % tp``;
``column``: dim 0; ``row``: dim 1; ``gated``: the gate's rows; ``vocab`` always fits, padded).
Parameters with the same kind, shape and metadata obey the same rule, so each rule is checked
once however many layers repeat it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.errors import ParallelLayoutError
from bridge.parallel.kinds import shard_shape

if TYPE_CHECKING:
    from bridge.parallel.spec import ParamSpec

__all__ = ["MAX_SUGGESTED_TP", "check_tp_fits", "fitting_tps"]

#: The largest TP size :func:`fitting_tps` suggests by default.
MAX_SUGGESTED_TP = 64

_Rule = tuple[str, tuple[int, ...], tuple[tuple[str, Any], ...]]


def _rules(params: Mapping[str, ParamSpec]) -> dict[_Rule, list[str]]:
    """Distinct ``(kind, shape, meta)`` -> the parameter names sharing it (shapes known only)."""
    out: dict[_Rule, list[str]] = {}
    for name, spec in params.items():
        if spec.shape is not None:
            key = (spec.kind, spec.shape, tuple(sorted(spec.meta.items())))
            out.setdefault(key, []).append(name)
    return out


def _failure(rule: _Rule, name: str, tp: int) -> ParallelLayoutError | None:
    kind, shape, meta = rule
    try:
        shard_shape(kind, shape, tp=tp, name=name, **dict(meta))
    except ParallelLayoutError as exc:
        return exc
    return None


def fitting_tps(
    params: Mapping[str, ParamSpec], *, candidates: Iterable[int] | None = None
) -> list[int]:
    """The TP sizes (``1..MAX_SUGGESTED_TP`` unless ``candidates``) every parameter splits into."""
    rules = _rules(params)
    sizes = range(1, MAX_SUGGESTED_TP + 1) if candidates is None else candidates
    return [
        tp for tp in sizes if all(_failure(rule, names[0], tp) is None for rule, names in rules.items())
    ]


def check_tp_fits(params: Mapping[str, ParamSpec], tp: int) -> None:
    """Raise one :class:`ParallelLayoutError` listing every rule ``tp`` breaks, with the sizes that fit.

    Parameters without a recorded shape are not checked (they are checked when split).
    """
    rules = _rules(params)
    broken = []
    for rule, names in rules.items():
        exc = _failure(rule, names[0], tp)
        if exc is not None:
            more = f" (and {len(names) - 1} more parameter(s) like it)" if len(names) > 1 else ""
            broken.append(f"{exc}{more}")
    if not broken:
        return
    fits = ", ".join(map(str, fitting_tps(params)))
    raise ParallelLayoutError(
        f"tp={tp} does not fit this model: {len(broken)} kind(s) of parameter cannot be split "
        f"{tp} ways.\n  - " + "\n  - ".join(broken) + f"\nTP sizes (up to {MAX_SUGGESTED_TP}) "
        f"that fit every parameter: {fits}."
    )
