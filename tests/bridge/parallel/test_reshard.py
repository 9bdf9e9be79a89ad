"""Offline resharding: a -> b equals a fresh split at b, bit for bit; bad targets fail before writing."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import CheckpointError, ParallelLayoutError
from bridge.parallel._common import bitwise_equal
from bridge.parallel.layout_io import load_layout, rank_file_name, read_layout, save_layout
from bridge.parallel.reshard import reshard
from bridge.parallel.state import layout_for, split_state
from tests.strategies import Architecture, Layout, architectures, dtypes, layouts, megatron_state


@st.composite
def reshard_cases(draw: st.DrawFn) -> tuple[Architecture, Layout, Layout]:
    arch = draw(architectures(max_layers=6))
    return arch, draw(layouts(arch, max_tp=4, max_pp=4)), draw(layouts(arch, max_tp=4, max_pp=4))


@settings(max_examples=20, deadline=None)
@given(case=reshard_cases(), dtype=dtypes())
def test_reshard_equals_a_fresh_split_at_the_target_layout(
    case: tuple[Architecture, Layout, Layout], dtype: torch.dtype
) -> None:
    arch, src, dst = case
    full, kinds = megatron_state(arch, dtype=dtype)
    src_layout = layout_for(
        full, kinds, share_embeddings_and_output_weights=arch.tied, **src.kwargs()
    )
    dst_layout = layout_for(
        full, kinds, share_embeddings_and_output_weights=arch.tied, **dst.kwargs()
    )
    with tempfile.TemporaryDirectory() as tmp:
        save_layout(Path(tmp) / "a", split_state(full, src_layout), src_layout)
        written = reshard(Path(tmp) / "a", Path(tmp) / "b", **dst.kwargs())
        assert written == dst_layout
        loaded_layout, shards = load_layout(Path(tmp) / "b")
        assert loaded_layout == dst_layout
        expected = split_state(full, dst_layout)
        assert set(shards) == set(expected)
        for rank, local in expected.items():
            assert set(shards[rank]) == set(local)
            assert all(bitwise_equal(shards[rank][n], t) for n, t in local.items()), rank


def _source(tmp_path: Path, *, tied: bool = False) -> Path:
    arch = Architecture(4, 4, 2, 2, 2, 8, 10, 8, tied=tied, gated=True, bias=False)
    full, kinds = megatron_state(arch)
    parallel = layout_for(full, kinds, tp=2, pp=2, share_embeddings_and_output_weights=tied)
    return save_layout(tmp_path / "a", split_state(full, parallel), parallel)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"tp": 4, "pp": 1}, r"num_query_groups is 2, which is not a multiple of 4"),
        ({"tp": 1, "pp": 3}, r"num_layers=4 cannot be split evenly over pp=3"),
        ({"tp": 1, "pp": 3, "first_stage_layers": 1}, r"remaining 3 of num_layers=4"),
    ],
)
def test_a_target_layout_that_does_not_fit_fails_before_anything_is_written(
    tmp_path: Path, kwargs: dict[str, int], pattern: str
) -> None:
    src = _source(tmp_path)
    with pytest.raises(ParallelLayoutError, match=pattern):
        reshard(src, tmp_path / "b", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_reshard_refuses_an_existing_target_itself_and_a_broken_source(tmp_path: Path) -> None:
    src = _source(tmp_path, tied=True)
    reshard(src, tmp_path / "b", tp=2, pp=1)
    with pytest.raises(CheckpointError, match="already exists"):
        reshard(src, tmp_path / "b", tp=1, pp=1)
    with pytest.raises(CheckpointError, match="onto itself"):
        reshard(src, src, tp=1, pp=1)
    reshard(src, tmp_path / "b", tp=1, pp=1, overwrite=True)  # a previous layout is replaced
    assert read_layout(tmp_path / "b").tp == 1
    (src / rank_file_name(1, 1)).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        reshard(src, tmp_path / "c", tp=1, pp=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_reshard_never_replaces_a_folder_that_is_not_a_checkpoint_even_with_overwrite(tmp_path: Path) -> None:
    src = _source(tmp_path, tied=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "thesis.txt").write_text("four years of work")
    with pytest.raises(CheckpointError, match="does not look like a checkpoint"):
        reshard(src, tmp_path / "b", tp=1, pp=1, overwrite=True)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_reshard_rejects_a_tied_copy_that_drifted_and_leaves_no_target(tmp_path: Path) -> None:
    arch = Architecture(2, 4, 2, 2, 2, 8, 10, 8, tied=True, gated=False, bias=False)
    full, kinds = megatron_state(arch)
    parallel = layout_for(full, kinds, tp=1, pp=2, share_embeddings_and_output_weights=True)
    shards = split_state(full, parallel)
    shards[(0, 1)]["output_layer.weight"] = shards[(0, 1)]["output_layer.weight"].clone()
    shards[(0, 1)]["output_layer.weight"][0, 0] += 1
    save_layout(tmp_path / "a", shards, parallel)
    with pytest.raises(ParallelLayoutError, match="should be a tied copy"):
        reshard(tmp_path / "a", tmp_path / "b", tp=1, pp=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
