"""HFCheckpointReader on valid checkpoints: discovery, lazy access, config, and the weight checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from bridge.checkpoint import HFCheckpointReader, MissingTensorError
from bridge.errors import CheckpointError, WeightMismatchError
from tests.bridge.checkpoint.builders import recording_opens, sample_tensors, write_checkpoint


def _two_shards(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    tensors = sample_tensors()
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": {n: tensors[n] for n in names[:2]},
        "model-00002-of-00002.safetensors": {n: tensors[n] for n in names[2:]},
    }
    return write_checkpoint(tmp_path / "ckpt", shards), tensors


def test_sharded_checkpoint_reads_back_every_tensor_bit_exactly(tmp_path: Path) -> None:
    path, tensors = _two_shards(tmp_path)
    reader = HFCheckpointReader(path)
    assert reader.keys() == sorted(tensors)
    assert list(reader) == sorted(tensors) and len(reader) == len(tensors)
    assert reader.files() == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for name, tensor in tensors.items():
        assert name in reader
        assert reader.shape(name) == tuple(tensor.shape)
        assert reader.dtype(name) == tensor.dtype
        assert reader.nbytes(name) == tensor.nbytes
        got = reader.get(name)
        assert got.dtype == tensor.dtype and torch.equal(got, tensor)
    assert reader.total_size == sum(t.nbytes for t in tensors.values())
    assert reader.metadata == {"total_size": 0}
    assert reader.file_metadata("model-00001-of-00002.safetensors") == {"format": "pt"}
    assert "missing" not in reader and 3 not in reader


def test_get_many_opens_each_file_once_and_keeps_the_requested_order(tmp_path: Path) -> None:
    path, tensors = _two_shards(tmp_path)
    reader = HFCheckpointReader(path)
    wanted = list(reversed(sorted(tensors)))
    with recording_opens() as opened:
        got = reader.get_many(wanted)
    assert list(got) == wanted
    assert all(torch.equal(got[n], tensors[n]) for n in wanted)
    assert sorted(Path(p).name for p in opened) == reader.files()


def test_get_reads_only_validated_files_and_returns_tensors_that_outlive_the_file(tmp_path: Path) -> None:
    path, tensors = _two_shards(tmp_path)
    reader = HFCheckpointReader(path)
    name = "lm_head.weight"
    with recording_opens() as opened:
        got = reader.get(name)
    assert opened == [str(path / reader.file_of(name))]
    got.add_(1)  # writable and owned: the file is not touched
    os.remove(path / reader.file_of(name))
    assert torch.equal(got, tensors[name] + 1)


def test_a_file_changed_after_validation_is_refused(tmp_path: Path) -> None:
    path, _ = _two_shards(tmp_path)
    reader = HFCheckpointReader(path)
    shard = path / reader.file_of("lm_head.weight")
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(CheckpointError, match="changed on disk"):
        reader.get("lm_head.weight")


def test_unknown_tensor_is_a_key_error_with_suggestions(tmp_path: Path) -> None:
    path, _ = _two_shards(tmp_path)
    reader = HFCheckpointReader(path)
    with pytest.raises(MissingTensorError, match="did you mean lm_head.weight") as info:
        reader.get("lm_head.weights")
    assert isinstance(info.value, KeyError) and isinstance(info.value, CheckpointError)


def test_single_file_and_single_other_name_are_found(tmp_path: Path) -> None:
    tensors = sample_tensors()
    single = write_checkpoint(tmp_path / "a", {"model.safetensors": tensors})
    other = write_checkpoint(tmp_path / "b", {"weights.safetensors": tensors})
    for path, file in ((single, "model.safetensors"), (other, "weights.safetensors")):
        reader = HFCheckpointReader(path)
        assert reader.files() == [file] and reader.metadata == {}
        assert torch.equal(reader.get("model.positions"), tensors["model.positions"])


def test_model_safetensors_wins_over_an_index_as_in_transformers(tmp_path: Path) -> None:
    path, _ = _two_shards(tmp_path)
    write_checkpoint(path, {"model.safetensors": {"only": torch.ones(2)}}, index=False)
    assert HFCheckpointReader(path).keys() == ["only"]


def test_several_safetensors_without_index_are_ambiguous(tmp_path: Path) -> None:
    shards = {"a.safetensors": {"x": torch.ones(1)}, "b.safetensors": {"y": torch.ones(1)}}
    path = write_checkpoint(tmp_path / "c", shards, index=False)
    with pytest.raises(CheckpointError, match="cannot tell which hold the model"):
        HFCheckpointReader(path)


def test_pickled_weights_are_refused_with_a_conversion_recipe(tmp_path: Path) -> None:
    path = tmp_path / "pickled"
    path.mkdir()
    torch.save({"x": torch.ones(1)}, path / "pytorch_model.bin")
    with recording_opens() as opened, pytest.raises(CheckpointError) as info:
        HFCheckpointReader(path)
    message = str(info.value)
    assert "only safetensors is supported" in message and "save_pretrained" in message
    assert "pytorch_model.bin" in message and not opened  # the pickle is never opened


def test_empty_directory_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        HFCheckpointReader(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        HFCheckpointReader(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        HFCheckpointReader(tmp_path / "file")


def test_hub_cache_snapshot_symlinks_into_blobs_are_accepted(tmp_path: Path) -> None:
    repo = tmp_path / "models--org--tiny"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / "0123abc"
    write_checkpoint(blobs, {"model.safetensors": sample_tensors()})
    snapshot.mkdir(parents=True)
    for name in ("model.safetensors", "config.json"):
        (blobs / name).rename(blobs / f"sha-{name}")
        (snapshot / name).symlink_to(Path("../../blobs") / f"sha-{name}")
    reader = HFCheckpointReader(snapshot)
    assert reader.config() == {"model_type": "llama"}
    assert torch.equal(reader.get("model.positions"), torch.arange(5))


def test_config_is_parsed_and_must_be_an_object(tmp_path: Path) -> None:
    path, _ = _two_shards(tmp_path)
    (path / "config.json").write_text(json.dumps({"hidden_size": 4, "auto_map": {}}))
    assert HFCheckpointReader(path).config() == {"hidden_size": 4, "auto_map": {}}
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        HFCheckpointReader(path).config()
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json does not exist"):
        HFCheckpointReader(path).config()


def test_check_against_reports_every_problem_sorted_in_one_message(tmp_path: Path) -> None:
    path, tensors = _two_shards(tmp_path)
    reader = HFCheckpointReader(path)
    expected = {name: (tuple(t.shape), t.dtype) for name, t in tensors.items()}
    reader.check_against(expected)
    reader.check_against(expected, check_dtype=True)
    del expected["model.positions"], expected["lm_head.weight"]
    expected["z.missing"] = ((1,), None)
    expected["a.missing"] = ((2,), None)
    expected["model.layers.0.mlp.up_proj.weight"] = ((4, 6), torch.float32)
    expected["model.embed_tokens.weight"] = ((8, 4), torch.float32)
    with pytest.raises(WeightMismatchError) as info:
        reader.check_against(expected)
    message = str(info.value)
    assert "2 missing, 2 unexpected, 1 wrongly shaped" in message and "dtype" not in message
    assert message.index("a.missing") < message.index("z.missing")
    assert message.index("lm_head.weight") < message.index("model.positions")
    assert "model.layers.0.mlp.up_proj.weight: expected [4, 6], found [6, 4]" in message
    with pytest.raises(WeightMismatchError, match=r"embed_tokens.weight: expected torch.float32, found torch.bfloat16"):
        reader.check_against(expected, check_dtype=True)
    report = reader.compare(expected, check_dtype=True)
    assert report.missing == ("a.missing", "z.missing")
    assert report.unexpected == ("lm_head.weight", "model.positions")
