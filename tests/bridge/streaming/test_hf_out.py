"""PlannedHFWriter writes the same bytes as HFCheckpointWriter (same sharding, headers, index), whatever
order the tensors arrive in, and refuses tensors that were not planned."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from bridge.checkpoint.writer import HFCheckpointWriter
from bridge.errors import CheckpointError
from bridge.streaming.hf_out import PlannedHFWriter, assign_shards
from bridge.streaming.plan import HFTensorPlan
from tests.strategies import dtypes, random_bits, shapes


@st.composite
def tensor_lists(draw: st.DrawFn, *, max_tensors: int = 8) -> list[tuple[str, torch.Tensor]]:
    count = draw(st.integers(1, max_tensors))
    out = []
    for i in range(count):
        shape = draw(shapes(min_dims=0, max_dims=3, max_side=5))
        out.append((f"t.{draw(st.sampled_from('abcxyz'))}{i}", random_bits(shape, draw(dtypes()), i)))
    return out


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tensors=tensor_lists(), max_shard_size=st.integers(1, 200), seed=st.integers(0, 99))
def test_same_bytes_as_the_buffering_writer_in_any_arrival_order(tensors, max_shard_size, seed, tmp_path_factory):
    root = tmp_path_factory.mktemp("w")
    with HFCheckpointWriter(root / "ref", max_shard_size=max_shard_size, durable=False,
                            config={"architectures": ["X"]}) as ref:
        for name, t in tensors:
            ref.add(name, t)
    plans = [HFTensorPlan(n, t.dtype, tuple(t.shape), n) for n, t in tensors]
    (root / "ours").mkdir()
    writer = PlannedHFWriter(root / "ours", plans, max_shard_size=max_shard_size, durable=False)
    arrival = list(tensors)
    random.Random(seed).shuffle(arrival)
    for name, t in arrival:
        writer.write(name, t)
    writer.finish()
    ours, want = _files(root / "ours"), _files(root / "ref")
    want.pop("config.json")
    assert ours == want
    assert writer.weight_map == ref.weight_map


def test_shards_follow_the_save_pretrained_rule() -> None:
    """A tensor over the limit gets its own shard at once; one that would overflow closes the current shard."""
    plan = [HFTensorPlan(n, torch.uint8, (size,), n) for n, size in [("a", 4), ("b", 5), ("big", 20), ("c", 2)]]
    assert [[t.name for t in s] for s in assign_shards(plan, 8)] == [["a"], ["big"], ["b", "c"]]


def test_unplanned_wrong_or_missing_tensors_are_refused(tmp_path: Path) -> None:
    plans = [HFTensorPlan("a", torch.float32, (2, 3), "x"), HFTensorPlan("b", torch.bfloat16, (4,), "y")]
    writer = PlannedHFWriter(tmp_path, plans, max_shard_size=10**9, durable=False)
    with pytest.raises(CheckpointError, match=r"planned torch.float32 \(2, 3\), found torch.float32 \(3, 2\)"):
        writer.write("a", torch.zeros(3, 2))
    with pytest.raises(CheckpointError, match="not planned"):
        writer.write("c", torch.zeros(1))
    writer.write("a", torch.zeros(2, 3))
    with pytest.raises(CheckpointError, match="already written"):
        writer.write("a", torch.zeros(2, 3))
    with pytest.raises(CheckpointError, match="never written"):
        writer.finish()
    writer.abort()


@pytest.mark.parametrize("durable", [True, False])
def test_durable_writes_start_the_write_back_as_they_go(tmp_path: Path, monkeypatch, durable: bool) -> None:
    import bridge.streaming.hf_out as hf_out

    monkeypatch.setattr(hf_out, "WRITEBACK_EVERY", 1000)
    tensors = {f"t{i}": torch.arange(300, dtype=torch.float32) + i for i in range(8)}  # 1200 bytes each
    plans = [HFTensorPlan(n, t.dtype, tuple(t.shape), source=n) for n, t in tensors.items()]
    writer = PlannedHFWriter(tmp_path, plans, max_shard_size=10**9, durable=durable)
    for name, t in tensors.items():
        writer.write(name, t)
    writer.finish()
    fd = os.open(tmp_path / writer.files[0], os.O_RDONLY)
    try:  # where sync_file_range exists (Linux), every 1000 bytes written started one write-back
        kicks = 8 if durable and hf_out.start_writeback(fd) else 0
    finally:
        os.close(fd)
    assert writer.writebacks_started == kicks
    assert load_file(tmp_path / writer.files[0])["t7"].equal(tensors["t7"])


def test_a_planned_export_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    from bridge.streaming.hf_out import planned_export

    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    plan = [HFTensorPlan("w", torch.float32, (2, 3), "w")]
    with pytest.raises(CheckpointError, match="never written"):  # the block forgot a tensor: nothing appears
        with planned_export(tmp_path / "out", plan, max_shard_size=2**20, companions=None, config={"a": 1}):
            pass
    with pytest.raises(RuntimeError, match="boom"):  # the block failed: nothing appears
        with planned_export(tmp_path / "out", plan, max_shard_size=2**20, companions=None) as export:
            export.writer.write("w", tensor)
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with planned_export(tmp_path / "out", plan, max_shard_size=2**20, companions=None, config={"a": 1}) as export:
        export.writer.write("w", tensor)
    assert export.path == tmp_path / "out" and sorted(p.name for p in export.path.iterdir()) == [
        "config.json", "model.safetensors"]
    assert torch.equal(load_file(export.path / "model.safetensors")["w"], tensor)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError):  # a directory the writer did not create is never replaced
        with planned_export(tmp_path / "mine", plan, max_shard_size=2**20, companions=None, overwrite=True):
            pass
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "not a checkpoint"
