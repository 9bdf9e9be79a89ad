"""The safetensors file format, parsed and written by hand so that every byte is checked first.

A safetensors file is ``u64 little-endian N`` + ``N`` bytes of UTF-8 JSON + a data region. The JSON maps
tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the data region)
plus an optional ``"__metadata__"`` map of strings. :func:`parse_header` applies the rules of the
reference implementation (the Rust ``safetensors`` crate) and a few stricter ones (no duplicate JSON keys,
no ``NaN``), and reports any violation as a :class:`~bridge.errors.CheckpointError` naming the file and,
where there is one, the tensor. :func:`encode_header` is its inverse for the writer.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from bridge.errors import CheckpointError

__all__ = [
    "DTYPES",
    "MAX_HEADER_SIZE",
    "Header",
    "TensorInfo",
    "dtype_name",
    "encode_header",
    "parse_header",
    "read_header",
    "storage_order",
]

#: The reference implementation refuses headers above 100 MB; so do we.
MAX_HEADER_SIZE = 100_000_000


def _optional_dtypes() -> dict[str, torch.dtype]:
    names = {
        "U16": "uint16",
        "U32": "uint32",
        "U64": "uint64",
        "F8_E4M3": "float8_e4m3fn",
        "F8_E4M3FNUZ": "float8_e4m3fnuz",
        "F8_E5M2": "float8_e5m2",
        "F8_E5M2FNUZ": "float8_e5m2fnuz",
        "F8_E8M0": "float8_e8m0fnu",
    }
    return {code: getattr(torch, attr) for code, attr in names.items() if hasattr(torch, attr)}


#: safetensors dtype code -> torch dtype, for every dtype with one element per whole number of bytes.
#: (Sub-byte packed dtypes such as ``F4`` are refused: their shapes do not map one-to-one onto torch.)
DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "C64": torch.complex64,
    **_optional_dtypes(),
}
_CODES: dict[torch.dtype, str] = {dtype: code for code, dtype in DTYPES.items()}


#: The order in which the reference library stores dtypes (widest first, which keeps every tensor aligned).
_STORAGE_ORDER = ("U64", "I64", "F64", "C64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "F8_E5M2FNUZ",
                  "F8_E4M3FNUZ", "F8_E8M0", "F8_E4M3", "F8_E5M2", "I8", "U8", "BOOL")  # fmt: skip
_RANK = {code: rank for rank, code in enumerate(_STORAGE_ORDER)}


def dtype_name(dtype: torch.dtype) -> str:
    """The safetensors code of a torch dtype (``torch.bfloat16`` -> ``"BF16"``)."""
    try:
        return _CODES[dtype]
    except KeyError:
        raise CheckpointError(
            f"cannot store dtype {dtype} in safetensors: expected one of "
            f"{sorted(str(d) for d in _CODES)}; convert the tensor first (tensor.to(torch.float32))"
        ) from None


@dataclass(frozen=True)
class TensorInfo:
    """One validated header entry: ``begin``/``end`` are offsets relative to the data region."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class Header:
    """A validated safetensors header: ``data_start`` is the absolute offset of the data region."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int
    file_size: int


def _fail(path: Path, what: str, fix: str = "re-download or re-export the checkpoint") -> CheckpointError:
    return CheckpointError(f"{path}: {what}; {fix}")


def _no_duplicates(path: Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise _fail(path, f"header lists the key {key!r} twice (a tensor must appear once)")
            out[key] = value
        return out

    return hook


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def _byte_count(shape: list[int], itemsize: int, limit: int) -> int:
    """``prod(shape) * itemsize``, or any value above ``limit`` once it is certain to exceed it.

    Stopping early keeps a hostile shape (millions of huge dimensions) from costing quadratic bignum time.
    """
    if 0 in shape:
        return 0
    count = itemsize
    for dim in shape:
        count *= dim
        if count > limit:
            return limit + 1
    return count


def _entry(path: Path, name: str, raw: Any, data_size: int) -> TensorInfo:
    where = f"tensor {name!r}"
    if not name:
        raise _fail(path, "header has a tensor with an empty name")
    if not isinstance(raw, dict):
        raise _fail(path, f"{where}: expected an object with dtype/shape/data_offsets, found {raw!r:.80}")
    dtype, shape, offsets = raw.get("dtype"), raw.get("shape"), raw.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _fail(path, f"{where}: unknown or unsupported dtype {dtype!r:.40}; expected one of {sorted(DTYPES)}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise _fail(path, f"{where}: shape must be a list of non-negative integers, found {shape!r:.80}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise _fail(path, f"{where}: data_offsets must be [begin, end] non-negative integers, found {offsets!r:.80}")
    begin, end = offsets
    if end < begin:
        raise _fail(path, f"{where}: data_offsets [{begin}, {end}] end before they begin")
    expected = _byte_count(shape, DTYPES[dtype].itemsize, limit=2**64)
    if end - begin != expected:
        needs = f"{expected} bytes" if expected <= 2**64 else "more than 2**64 bytes"
        raise _fail(
            path,
            f"{where}: shape {shape!s:.80} of {dtype} needs {needs} but data_offsets [{begin}, {end}] "
            f"hold {end - begin}",
        )
    if end > data_size:
        raise _fail(
            path,
            f"{where}: data_offsets [{begin}, {end}] reach beyond the data region ({data_size} bytes); "
            "the file is truncated or its header lies",
        )
    return TensorInfo(name=name, dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def _check_layout(path: Path, infos: list[TensorInfo], data_size: int) -> None:
    """Tensors must tile the data region exactly: no overlap, no gap, nothing after the last one."""
    position, previous = 0, None
    for info in sorted(infos, key=lambda i: (i.begin, i.end)):
        if info.begin < position:
            raise _fail(path, f"tensor {info.name!r} [{info.begin}, {info.end}] overlaps tensor {previous!r}")
        if info.begin > position:
            after = f"tensor {previous!r} ends at {position}" if previous else "the data region starts at 0"
            raise _fail(path, f"tensor {info.name!r} starts at {info.begin} but {after}: tensors must be contiguous")
        position, previous = info.end, info.name
    if position != data_size:
        raise _fail(
            path,
            f"the header describes {position} bytes of tensor data but the data region holds {data_size} bytes",
        )


def parse_header(path: Path, prefix: bytes, header_bytes: bytes, file_size: int) -> Header:
    """Validate a header read from ``path`` (``prefix`` is its first 8 bytes) against the file's size."""
    (size,) = struct.unpack("<Q", prefix)
    if len(header_bytes) != size:
        raise _fail(path, f"header declares {size} bytes but only {len(header_bytes)} could be read")
    data_size = file_size - 8 - size
    try:
        text = header_bytes.decode("utf-8")
        raw = json.loads(text, object_pairs_hook=_no_duplicates(path), parse_constant=_reject_constant)
    except CheckpointError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(path, f"header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise _fail(path, f"header must be a JSON object, found {type(raw).__name__}")
    metadata = raw.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _fail(path, f"__metadata__ must map strings to strings, found {metadata!r:.80}")
    infos = [_entry(path, name, entry, data_size) for name, entry in raw.items()]
    _check_layout(path, infos, data_size)
    return Header(
        tensors={i.name: i for i in infos}, metadata=dict(metadata), data_start=8 + size, file_size=file_size
    )


def read_header(path: Path, handle: BinaryIO, file_size: int) -> Header:
    """Read and validate the header of an open safetensors file, reading at most ``8 + N`` bytes."""
    if file_size < 8:
        raise _fail(path, f"file is {file_size} bytes, too short for a safetensors header (8-byte length + JSON)")
    prefix = handle.read(8)
    (size,) = struct.unpack("<Q", prefix)
    if size > MAX_HEADER_SIZE:
        raise _fail(path, f"header length {size} exceeds the {MAX_HEADER_SIZE}-byte limit; the file is not safetensors")
    if 8 + size > file_size:
        raise _fail(path, f"header length {size} is larger than the file ({file_size} bytes); the file is truncated")
    return parse_header(path, prefix, handle.read(size), file_size)


def storage_order(dtypes: Mapping[str, torch.dtype]) -> list[str]:
    """Tensor names in the order the reference library writes them: by dtype (widest first), then by name.

    Following it makes our files byte-identical to ``safetensors.torch.save_file``'s.
    """
    return sorted(dtypes, key=lambda name: (_RANK[dtype_name(dtypes[name])], name))


def encode_header(entries: list[tuple[str, torch.dtype, tuple[int, ...]]], metadata: dict[str, str]) -> bytes:
    """The ``8 + N`` header bytes for tensors written in ``entries`` order, padded to 8-byte alignment.

    Callers write the tensors in the same order, each contiguous, right after the header.
    """
    body: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, dtype, shape in entries:
        nbytes = math.prod(shape) * dtype.itemsize
        body[name] = {"dtype": dtype_name(dtype), "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text
