"""The saved layout on disk: save/load round trip, JSON round trip, streaming writer, atomicity."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from bridge.errors import CheckpointError, ParallelLayoutError
from bridge.parallel._common import bitwise_equal
from bridge.parallel._safetensors import StreamingWriter
from bridge.parallel.layout_io import (
    LAYOUT_FILE,
    load_full_state,
    load_layout,
    rank_file_name,
    read_layout,
    save_layout,
)
from bridge.parallel.spec import ParallelLayout
from bridge.parallel.state import layout_for, split_state
from tests.strategies import (
    Architecture,
    Layout,
    architectures_and_layouts,
    dtypes,
    megatron_state,
    random_bits,
)


def _saved(
    arch: Architecture, layout: Layout, directory: Path, dtype: torch.dtype = torch.float32
) -> tuple[dict[str, torch.Tensor], ParallelLayout]:
    full, kinds = megatron_state(arch, dtype=dtype)
    parallel = layout_for(
        full, kinds, share_embeddings_and_output_weights=arch.tied, **layout.kwargs()
    )
    save_layout(directory, split_state(full, parallel), parallel)
    return full, parallel


@settings(max_examples=15, deadline=None)
@given(case=architectures_and_layouts(max_layers=4), dtype=dtypes())
def test_save_then_load_gives_back_every_rank_and_the_full_state(
    case: tuple[Architecture, Layout], dtype: torch.dtype
) -> None:
    arch, layout = case
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "ckpt"
        full, parallel = _saved(arch, layout, target, dtype)
        files = sorted(p.name for p in target.iterdir())
        assert files == sorted([LAYOUT_FILE] + [rank_file_name(r, s) for r, s in parallel.ranks()])
        loaded_layout, shards = load_layout(target)
        assert loaded_layout == parallel and dict(loaded_layout.params) == dict(parallel.params)
        expected = split_state(full, parallel)
        for rank, local in expected.items():
            assert set(shards[rank]) == set(local)
            assert all(bitwise_equal(shards[rank][n], t) for n, t in local.items())
        _, merged = load_full_state(target)
        assert list(merged) == list(full) and all(bitwise_equal(merged[n], full[n]) for n in full)


def test_layout_json_round_trips_and_records_kinds_metadata_dtype_and_full_shape(
    tmp_path: Path,
) -> None:
    arch = Architecture(2, 4, 4, 2, 2, 8, 10, 8, tied=True, gated=True, bias=True)
    _, parallel = _saved(arch, Layout(2, 2), tmp_path / "c", torch.bfloat16)
    data = json.loads((tmp_path / "c" / LAYOUT_FILE).read_text())
    assert (
        data["tp"],
        data["pp"],
        data["num_layers"],
        data["share_embeddings_and_output_weights"],
    ) == (2, 2, 2, True)
    assert data["params"]["embedding.word_embeddings.weight"] == {
        "kind": "vocab", "meta": {"divisible_by": 8, "vocab_size": 10}, "dtype": "bfloat16", "shape": [10, 4],
    }  # fmt: skip
    assert data["params"]["decoder.layers.1.self_attention.linear_qkv.bias"]["meta"] == {
        "num_query_groups": 2
    }
    assert ParallelLayout.from_json(data) == parallel == read_layout(tmp_path / "c")
    with safe_open(str(tmp_path / "c" / rank_file_name(1, 1)), framework="pt") as handle:
        assert (
            handle.metadata()["tp_rank"] == "1"
            and "decoder.layers.0.mlp.linear_fc1.weight" in handle.keys()  # noqa: SIM118
        )


@settings(max_examples=30, deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.lists(st.integers(0, 3), max_size=3), dtypes()), min_size=1, max_size=4
    ),
    seed=st.integers(0, 2**10),
)
def test_streaming_writer_files_read_back_bit_exactly_with_safetensors(
    entries: list[tuple[list[int], torch.dtype]], seed: int
) -> None:
    tensors = {
        f"t{i}": random_bits(tuple(shape), dtype, seed + i)
        for i, (shape, dtype) in enumerate(entries)
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.safetensors"
        with StreamingWriter(
            path, [(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()], {"k": "v"}
        ) as writer:
            for name, tensor in tensors.items():
                writer.write(name, tensor)
        with safe_open(str(path), framework="pt") as handle:
            assert handle.metadata() == {"k": "v"}
            assert all(bitwise_equal(handle.get_tensor(n), t) for n, t in tensors.items())


def test_streaming_writer_refuses_out_of_order_or_missing_tensors(tmp_path: Path) -> None:
    entries = [("a", torch.float32, (2,)), ("b", torch.float32, (2,))]
    writer = StreamingWriter(tmp_path / "x.safetensors", entries)
    with pytest.raises(CheckpointError, match="expected 'a'"):
        writer.write("b", torch.zeros(2))
    writer.write("a", torch.zeros(2))
    with pytest.raises(CheckpointError, match="never written"):
        writer.close()


def test_save_refuses_shards_that_do_not_match_the_layout_and_writes_nothing(
    tmp_path: Path,
) -> None:
    arch = Architecture(2, 4, 2, 2, 2, 8, 10, 8, tied=False, gated=False, bias=False)
    full, kinds = megatron_state(arch)
    parallel = layout_for(full, kinds, tp=2, pp=2)
    shards = split_state(full, parallel)
    shards[(1, 0)]["decoder.layers.0.mlp.linear_fc1.weight"] = torch.zeros(3, 4)
    with pytest.raises(ParallelLayoutError, match=r"Rank tp=1, pp=0 does not match the layout"):
        save_layout(tmp_path / "c", shards, parallel)
    assert list(tmp_path.iterdir()) == []


def test_save_layout_never_replaces_a_folder_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    arch = Architecture(2, 4, 2, 2, 2, 8, 10, 8, tied=False, gated=False, bias=False)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "thesis.txt").write_text("four years of work")
    full, kinds = megatron_state(arch)
    parallel = layout_for(full, kinds, **Layout(2, 1).kwargs())
    with pytest.raises(CheckpointError, match="does not look like a checkpoint"):
        save_layout(tmp_path / "t", split_state(full, parallel), parallel, overwrite=True)
    assert [p.name for p in (tmp_path / "t").iterdir()] == ["thesis.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["t"]  # no staging directory left behind


def _layout_doc(tmp_path: Path) -> dict:
    arch = Architecture(2, 4, 2, 2, 2, 8, 10, 8, tied=False, gated=False, bias=False)
    _saved(arch, Layout(2, 1), tmp_path / "c")
    return json.loads((tmp_path / "c" / LAYOUT_FILE).read_text())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(mtp="false"), r"'mtp' must be true or false, found 'false'"),
        (lambda d: d.update(share_embeddings_and_output_weights=0), r"must be true or false, found 0"),
        (lambda d: d.update(tp=2.9), r"'tp' must be a positive integer, found 2.9"),
        (lambda d: d.update(num_layers=True), r"'num_layers' must be a positive integer, found True"),
        (lambda d: d.update(first_stage_layers="1"), r"'first_stage_layers' must be null or a non-negative"),
        (lambda d: d.pop("pp"), r"required field 'pp' is missing"),
        (lambda d: d.update(params=[]), r"'params' must be an object"),
        (lambda d: next(iter(d["params"].values())).update(shape="ab"), r"'shape' must be a list of non-negative"),
        (lambda d: next(iter(d["params"].values())).update(shape=[4, -1]), r"'shape' must be a list of non-negative"),
        (lambda d: next(iter(d["params"].values())).update(shape=[4.0, 2]), r"'shape' must be a list of non-negative"),
        (lambda d: next(iter(d["params"].values())).update(kind=3), r"'kind' must be a string"),
        (lambda d: next(iter(d["params"].values())).update(dtype="float7"), r"Unsupported dtype 'float7'"),
    ],
)
def test_layout_json_is_parsed_strictly_and_the_error_names_the_file(tmp_path: Path, edit, message: str) -> None:
    doc = _layout_doc(tmp_path)
    edit(doc)
    (tmp_path / "c" / LAYOUT_FILE).write_text(json.dumps(doc))
    with pytest.raises(ParallelLayoutError, match=message) as info:
        read_layout(tmp_path / "c")
    assert str(info.value).startswith(str(tmp_path / "c" / LAYOUT_FILE))


def test_layout_json_meta_counts_must_be_integers(tmp_path: Path) -> None:
    doc = _layout_doc(tmp_path)
    spec = next(s for s in doc["params"].values() if s["meta"])
    key = next(iter(spec["meta"]))
    spec["meta"][key] = str(spec["meta"][key])
    (tmp_path / "c" / LAYOUT_FILE).write_text(json.dumps(doc))
    with pytest.raises(ParallelLayoutError, match=rf"meta '{key}' must be a non-negative integer"):
        read_layout(tmp_path / "c")


def test_load_reports_a_missing_rank_file_and_a_foreign_layout(tmp_path: Path) -> None:
    arch = Architecture(2, 4, 2, 2, 2, 8, 10, 8, tied=False, gated=False, bias=False)
    _saved(arch, Layout(2, 1), tmp_path / "c")
    (tmp_path / "c" / rank_file_name(1, 0)).unlink()
    with pytest.raises(CheckpointError, match=r"missing \['tp01_pp00.safetensors'\]"):
        load_layout(tmp_path / "c")
    (tmp_path / "c" / LAYOUT_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ParallelLayoutError, match="Not a layout this version can read"):
        read_layout(tmp_path / "c")
    with pytest.raises(CheckpointError, match="is missing"):
        read_layout(tmp_path / "nowhere")


@settings(max_examples=10, deadline=None)
@given(case=architectures_and_layouts(max_layers=2))
def test_layout_json_records_the_vocab_padding_and_reads_without_it(case: tuple[Architecture, Layout]) -> None:
    """``vocab_padding`` says which rows export strips; files written before it existed still read."""
    from bridge.parallel.layout_io import layout_vocab_padding
    from bridge.parallel.vocab import VocabPadding, padded_vocab_size

    arch, layout = case
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "ckpt"
        _, parallel = _saved(arch, layout, target)
        data = json.loads((target / LAYOUT_FILE).read_text())
        record = VocabPadding.from_json(data["vocab_padding"])
        assert record == layout_vocab_padding(parallel)
        assert (record.vocab_size, record.tp) == (arch.vocab_size, layout.tp)
        assert record.padded_size == padded_vocab_size(arch.vocab_size, tp=layout.tp,
                                                       divisible_by=arch.make_vocab_size_divisible_by)
        del data["vocab_padding"]  # a layout.json from before the record
        (target / LAYOUT_FILE).write_text(json.dumps(data))
        assert read_layout(target) == parallel
        data["vocab_padding"] = {**record.to_json(), "tp": layout.tp + 1}
        (target / LAYOUT_FILE).write_text(json.dumps(data))
        with pytest.raises((CheckpointError, ParallelLayoutError), match="vocab padding"):
            read_layout(target)
