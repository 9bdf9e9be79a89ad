"""Strict validation of a ``layout.json`` document, before anything is built from it.

:meth:`bridge.parallel.spec.ParallelLayout.from_json` used to coerce (``bool("false")`` is True,
``int(2.9)`` is 2, any iterable became a shape). Like the safetensors header reader
(:mod:`bridge.checkpoint.format`), every field is now checked for its exact JSON type first, and a
violation names the file, the field (and the parameter) and what was expected. Keys this version
does not know are ignored, so later additions to the document stay readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.errors import ParallelLayoutError

__all__ = ["check_layout_document"]

#: Metadata keys whose values are counts (everything else in ``meta`` must be a string).
_COUNT_META = frozenset({"num_query_groups", "divisible_by", "vocab_size", "ep"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fail(source: str, where: str, expected: str, value: Any) -> ParallelLayoutError:
    return ParallelLayoutError(
        f"{source}: {where} must be {expected}, found {value!r:.80}; the file is corrupt or was edited by "
        "hand: re-save the layout (save_layout / mcore-compat convert) or fix the field"
    )


def _positive(source: str, data: Mapping[str, Any], key: str) -> None:
    if key not in data:
        raise ParallelLayoutError(f"{source}: the required field {key!r} is missing; re-save the layout")
    value = data[key]
    if not _is_int(value) or value < 1:
        raise _fail(source, f"{key!r}", "a positive integer", value)


def _optional_count(source: str, data: Mapping[str, Any], key: str) -> None:
    value = data.get(key)
    if value is not None and (not _is_int(value) or value < 0):
        raise _fail(source, f"{key!r}", "null or a non-negative integer", value)


def _optional_bool(source: str, data: Mapping[str, Any], key: str) -> None:
    if key in data and not isinstance(data[key], bool):
        raise _fail(source, f"{key!r}", "true or false", data[key])


def _param(source: str, name: Any, spec: Any) -> None:
    if not isinstance(name, str) or not name:
        raise _fail(source, "every parameter name", "a non-empty string", name)
    where = f"parameter {name!r}"
    if not isinstance(spec, dict):
        raise _fail(source, where, "an object with kind/meta/dtype/shape", spec)
    if not isinstance(spec.get("kind"), str):
        raise _fail(source, f"{where}: 'kind'", "a string", spec.get("kind"))
    meta = spec.get("meta", {})
    if not isinstance(meta, dict):
        raise _fail(source, f"{where}: 'meta'", "an object", meta)
    for key, value in meta.items():
        if key in _COUNT_META:
            if not _is_int(value) or value < 0:
                raise _fail(source, f"{where}: meta {key!r}", "a non-negative integer", value)
        elif not isinstance(value, str):
            raise _fail(source, f"{where}: meta {key!r}", "a string", value)
    if "dtype" in spec and spec["dtype"] is not None and not isinstance(spec["dtype"], str):
        raise _fail(source, f"{where}: 'dtype'", "a dtype name such as \"bfloat16\"", spec["dtype"])
    shape = spec.get("shape")
    if shape is not None and (not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape)):
        raise _fail(source, f"{where}: 'shape'", "a list of non-negative integers", shape)


def check_layout_document(data: Any, *, source: str = "layout.json") -> None:
    """Raise :class:`ParallelLayoutError` naming ``source`` unless ``data`` has the exact types a layout needs.

    The format name and version are checked by the caller (:meth:`ParallelLayout.from_json`).
    """
    if not isinstance(data, dict):
        raise _fail(source, "the document", "a JSON object", type(data).__name__)
    for key in ("tp", "pp", "num_layers"):
        _positive(source, data, key)
    for key in ("first_stage_layers", "last_stage_layers"):
        _optional_count(source, data, key)
    for key in ("share_embeddings_and_output_weights", "mtp"):
        _optional_bool(source, data, key)
    if data.get("model_class", "gpt") not in ("gpt", "hybrid"):
        raise _fail(source, "'model_class'", "\"gpt\" or \"hybrid\"", data.get("model_class"))
    params = data.get("params")
    if not isinstance(params, dict):
        raise _fail(source, "'params'", "an object mapping parameter names to specs", params)
    for name, spec in params.items():
        _param(source, name, spec)
