"""The safetensors header codec: encode_header and parse_header are inverses, and agree with the reference library."""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save

from bridge.checkpoint.format import DTYPES, dtype_name, encode_header, read_header, storage_order
from bridge.errors import CheckpointError

Spec = tuple[str, torch.dtype, tuple[int, ...]]


def shapes(*, max_rank: int = 3, max_dim: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(min_value=0, max_value=max_dim), max_size=max_rank).map(tuple)


def tensor_specs(*, max_tensors: int = 6) -> st.SearchStrategy[list[Spec]]:
    names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12).filter(
        lambda n: n != "__metadata__"
    )
    spec = st.tuples(names, st.sampled_from(sorted(DTYPES.values(), key=str)), shapes())
    return st.lists(spec, max_size=max_tensors, unique_by=lambda s: s[0])


def _file(specs: list[Spec], seed: int) -> bytes:
    gen = torch.Generator().manual_seed(seed)
    body = b"".join(
        torch.randint(0, 256, (math.prod(shape) * dtype.itemsize,), generator=gen, dtype=torch.uint8).numpy().tobytes()
        for _, dtype, shape in specs
    )
    return encode_header(specs, {"format": "pt"}) + body


def test_dtype_codes_are_a_bijection() -> None:
    assert all(DTYPES[dtype_name(dtype)] == dtype for dtype in DTYPES.values())
    assert len(set(DTYPES.values())) == len(DTYPES)
    with pytest.raises(CheckpointError, match="cannot store dtype torch.complex128"):
        dtype_name(torch.complex128)


@settings(max_examples=60, deadline=None)
@given(specs=tensor_specs(), seed=st.integers(0, 2**16))
def test_parse_inverts_encode_and_the_reference_library_agrees(specs: list[Spec], seed: int) -> None:
    data = _file(specs, seed)
    header = read_header(Path("x.safetensors"), io.BytesIO(data), len(data))
    assert header.data_start % 8 == 0 and header.metadata == {"format": "pt"}
    assert [(i.name, i.torch_dtype, i.shape) for i in header.tensors.values()] == specs
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.safetensors"
        path.write_bytes(data)
        with safe_open(str(path), framework="pt") as handle:
            assert sorted(handle.keys()) == sorted(header.tensors)
            for name, info in header.tensors.items():
                got = handle.get_tensor(name)
                assert got.dtype == info.torch_dtype and tuple(got.shape) == info.shape
                raw = data[header.data_start + info.begin : header.data_start + info.end]
                assert got.reshape(-1).view(torch.uint8).numpy().tobytes() == raw


@settings(max_examples=40, deadline=None)
@given(specs=tensor_specs(), seed=st.integers(0, 2**16))
def test_storage_order_makes_files_byte_identical_to_the_reference(specs: list[Spec], seed: int) -> None:
    data = _file(specs, seed)
    header = read_header(Path("x.safetensors"), io.BytesIO(data), len(data))
    tensors = {}
    for name, info in header.tensors.items():
        raw = bytearray(data[header.data_start + info.begin : header.data_start + info.end])
        tensors[name] = torch.frombuffer(raw, dtype=torch.uint8).view(info.torch_dtype).reshape(info.shape) \
            if raw else torch.empty(info.shape, dtype=info.torch_dtype)  # fmt: skip
    order = storage_order({name: t.dtype for name, t in tensors.items()})
    ours = encode_header([(n, tensors[n].dtype, tuple(tensors[n].shape)) for n in order], {"format": "pt"})
    ours += b"".join(tensors[n].reshape(-1).view(torch.uint8).numpy().tobytes() for n in order)
    assert ours == save(tensors, metadata={"format": "pt"})


def test_reference_library_files_parse() -> None:
    tensors = {"b": torch.ones(3, dtype=torch.float16), "a": torch.arange(4), "s": torch.tensor(2.0)}
    data = save(tensors, metadata={"format": "pt"})
    header = read_header(Path("ref.safetensors"), io.BytesIO(data), len(data))
    assert {n: (i.torch_dtype, i.shape) for n, i in header.tensors.items()} == {
        n: (t.dtype, tuple(t.shape)) for n, t in tensors.items()
    }
