"""Hostile checkpoints: each gives a CheckpointError naming the file (and tensor), and nothing outside is opened."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bridge.checkpoint import HFCheckpointReader
from bridge.errors import CheckpointError
from tests.bridge.checkpoint.builders import raw_safetensors, recording_opens, write_checkpoint

F32_2x2 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
SHARD = "model.safetensors"


def _raw(tmp: Path, content: bytes, name: str = SHARD) -> Path:
    directory = tmp / "ckpt"
    directory.mkdir(exist_ok=True)
    (directory / name).write_bytes(content)
    return directory


def _outside(tmp: Path) -> Path:
    """A valid checkpoint file outside the checkpoint directory (it must never be opened)."""
    write_checkpoint(tmp / "elsewhere", {"secret.safetensors": {"w": torch.ones(2)}}, index=False)
    return tmp / "elsewhere" / "secret.safetensors"


def _index(tmp: Path, weight_map: dict[str, str], files: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    return write_checkpoint(tmp / "ckpt", files or {"model-00001-of-00001.safetensors": {"w": torch.ones(2)}},
                            weight_map=weight_map, index=True)


def truncated(tmp: Path) -> tuple[Path, list[str]]:
    path = write_checkpoint(tmp / "ckpt", {SHARD: {"a": torch.ones(4), "b": torch.ones(8)}})
    data = (path / SHARD).read_bytes()
    (path / SHARD).write_bytes(data[:-5])
    return path, [SHARD, "'b'", "truncated"]


def shape_lie(tmp: Path) -> tuple[Path, list[str]]:
    header = {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 16]}}
    return _raw(tmp, raw_safetensors(header, bytes(16))), [SHARD, "'w'", "needs 64 bytes"]


def huge_rank_shape(tmp: Path) -> tuple[Path, list[str]]:
    header = {"a": {"dtype": "F32", "shape": [2**63] * 200_000, "data_offsets": [0, 4]}}  # prod() would take hours
    return _raw(tmp, raw_safetensors(header, bytes(4))), [SHARD, "'a'", "more than 2**64 bytes"]


def overlap(tmp: Path) -> tuple[Path, list[str]]:
    header = {"a": F32_2x2, "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}}
    return _raw(tmp, raw_safetensors(header, bytes(24))), [SHARD, "'b'", "overlaps tensor 'a'"]


def beyond_end(tmp: Path) -> tuple[Path, list[str]]:
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [100, 116]}}
    return _raw(tmp, raw_safetensors(header, bytes(16))), [SHARD, "'a'", "beyond the data region"]


def gap(tmp: Path) -> tuple[Path, list[str]]:
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [4, 20]}}
    return _raw(tmp, raw_safetensors(header, bytes(20))), [SHARD, "'a'", "starts at 4", "contiguous"]


def trailing_bytes(tmp: Path) -> tuple[Path, list[str]]:
    return _raw(tmp, raw_safetensors({"a": F32_2x2}, bytes(20))), [SHARD, "16 bytes", "holds 20"]


def absurd_header_length(tmp: Path) -> tuple[Path, list[str]]:
    return _raw(tmp, struct.pack("<Q", 2**62) + b"{}"), [SHARD, "exceeds", "limit"]


def header_longer_than_file(tmp: Path) -> tuple[Path, list[str]]:
    return _raw(tmp, raw_safetensors({"a": F32_2x2}, bytes(16), length=5000)), [SHARD, "larger than the file"]


def tiny_file(tmp: Path) -> tuple[Path, list[str]]:
    return _raw(tmp, b"\x01\x02"), [SHARD, "too short"]


def unknown_dtype(tmp: Path) -> tuple[Path, list[str]]:
    header = {"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 2]}}
    return _raw(tmp, raw_safetensors(header, bytes(2))), [SHARD, "'a'", "unknown or unsupported dtype 'Q7'"]


def negative_shape(tmp: Path) -> tuple[Path, list[str]]:
    header = {"a": {"dtype": "U8", "shape": [-2], "data_offsets": [0, 2]}}
    return _raw(tmp, raw_safetensors(header, bytes(2))), [SHARD, "'a'", "non-negative integers"]


def float_and_bool_shapes(tmp: Path) -> tuple[Path, list[str]]:
    header = {"a": {"dtype": "U8", "shape": [2.0], "data_offsets": [0, 2]}, "b": {"dtype": "U8", "shape": [True],
              "data_offsets": [2, 3]}}  # fmt: skip
    return _raw(tmp, raw_safetensors(header, bytes(3))), [SHARD, "'a'", "non-negative integers"]


def header_not_json(tmp: Path) -> tuple[Path, list[str]]:
    return _raw(tmp, struct.pack("<Q", 4) + b"{\xff\xfe}"), [SHARD, "not valid UTF-8 JSON"]


def deeply_nested_header(tmp: Path) -> tuple[Path, list[str]]:
    body = b"[" * 200_000 + b"]" * 200_000
    return _raw(tmp, struct.pack("<Q", len(body)) + body), [SHARD, "not valid UTF-8 JSON"]


def duplicate_key_in_header(tmp: Path) -> tuple[Path, list[str]]:
    body = json.dumps({"a": F32_2x2}).encode()[:-1] + b',"a":' + json.dumps(F32_2x2).encode() + b"}"
    return _raw(tmp, struct.pack("<Q", len(body)) + body + bytes(16)), [SHARD, "'a' twice"]


def bad_metadata(tmp: Path) -> tuple[Path, list[str]]:
    header = {"__metadata__": {"format": 1}, "a": F32_2x2}
    return _raw(tmp, raw_safetensors(header, bytes(16))), [SHARD, "__metadata__"]


def parent_escape(tmp: Path) -> tuple[Path, list[str]]:
    _outside(tmp)
    path = _index(tmp, {"w": "../elsewhere/secret.safetensors"})
    return path, ["model.safetensors.index.json", "'w'", "climbs out of the directory"]


def dotdot_plain(tmp: Path) -> tuple[Path, list[str]]:
    return _index(tmp, {"w": ".."}), ["model.safetensors.index.json", "not a file name"]


def absolute_path(tmp: Path) -> tuple[Path, list[str]]:
    outside = _outside(tmp)
    return _index(tmp, {"w": str(outside)}), ["model.safetensors.index.json", "'w'", "is an absolute path"]


def drive_letter(tmp: Path) -> tuple[Path, list[str]]:
    return _index(tmp, {"w": "C:model.safetensors"}), ["model.safetensors.index.json", "drive letter (contains ':')"]


def backslash_escape(tmp: Path) -> tuple[Path, list[str]]:
    path = _index(tmp, {"w": "..\\..\\secret.safetensors"})
    return path, ["model.safetensors.index.json", "climbs out of the directory"]


def symlink_out(tmp: Path) -> tuple[Path, list[str]]:
    outside = _outside(tmp)
    path = _index(tmp, {"w": "model-00001-of-00001.safetensors", "x": "evil.safetensors"})
    (path / "evil.safetensors").symlink_to(outside)
    return path, ["evil.safetensors", "outside the checkpoint directory"]


def symlinked_single_file_out(tmp: Path) -> tuple[Path, list[str]]:
    outside = _outside(tmp)
    (tmp / "ckpt").mkdir()
    (tmp / "ckpt" / SHARD).symlink_to(outside)
    return tmp / "ckpt", [SHARD, "outside the checkpoint directory"]


def missing_shards(tmp: Path) -> tuple[Path, list[str]]:
    weight_map = {"w": "model-00001-of-00003.safetensors", "x": "model-00003-of-00003.safetensors",
                  "y": "model-00002-of-00003.safetensors"}  # fmt: skip
    path = _index(tmp, weight_map, {"model-00001-of-00003.safetensors": {"w": torch.ones(2)}})
    return path, ["2 missing shard", "model-00002-of-00003.safetensors, model-00003-of-00003.safetensors"]


def duplicate_across_shards(tmp: Path) -> tuple[Path, list[str]]:
    files = {"a.safetensors": {"w": torch.ones(2)}, "b.safetensors": {"w": torch.ones(2), "v": torch.ones(1)}}
    path = _index(tmp, {"w": "a.safetensors", "v": "b.safetensors"}, files)
    return path, ["'w'", "stored twice", "in a.safetensors and in b.safetensors"]


def index_points_elsewhere(tmp: Path) -> tuple[Path, list[str]]:
    files = {"a.safetensors": {"w": torch.ones(2)}, "b.safetensors": {"v": torch.ones(1)}}
    path = _index(tmp, {"w": "b.safetensors", "v": "b.safetensors", "u": "a.safetensors"}, files)
    return path, ["'w'", "puts tensor 'w' in b.safetensors", "stored in a.safetensors"]


def index_lists_absent_tensor(tmp: Path) -> tuple[Path, list[str]]:
    return _index(tmp, {"w": "model-00001-of-00001.safetensors", "ghost": "model-00001-of-00001.safetensors"}), [
        "model.safetensors.index.json", "'ghost'", "no shard holds"]  # fmt: skip


def header_name_not_in_index(tmp: Path) -> tuple[Path, list[str]]:
    files = {"a.safetensors": {"w": torch.ones(2), "stowaway": torch.ones(1)}}
    return _index(tmp, {"w": "a.safetensors"}, files), ["'stowaway'", "a.safetensors", "missing from weight_map"]


def index_not_json(tmp: Path) -> tuple[Path, list[str]]:
    path = _index(tmp, {"w": "model-00001-of-00001.safetensors"})
    (path / "model.safetensors.index.json").write_text('{"weight_map": {"w": "a.safetensors",}}')
    return path, ["model.safetensors.index.json", "line 1, column 38"]


def index_weight_map_not_object(tmp: Path) -> tuple[Path, list[str]]:
    path = _index(tmp, {"w": "model-00001-of-00001.safetensors"})
    (path / "model.safetensors.index.json").write_text('{"weight_map": ["a.safetensors"]}')
    return path, ["model.safetensors.index.json", "non-empty 'weight_map'"]


def index_value_not_string(tmp: Path) -> tuple[Path, list[str]]:
    return _index(tmp, {"w": 3}), ["model.safetensors.index.json", "'w'", "found int"]  # type: ignore[dict-item]


def index_to_pickle(tmp: Path) -> tuple[Path, list[str]]:
    return _index(tmp, {"w": "pytorch_model.bin"}), ["'w'", "not a .safetensors file"]


def shard_is_directory(tmp: Path) -> tuple[Path, list[str]]:
    path = _index(tmp, {"w": "model-00001-of-00001.safetensors", "x": "sub.safetensors"})
    (path / "sub.safetensors").mkdir()
    return path, ["sub.safetensors", "not a regular file"]


def shard_is_fifo(tmp: Path) -> tuple[Path, list[str]]:
    path = _index(tmp, {"w": "model-00001-of-00001.safetensors", "x": "pipe.safetensors"})
    os.mkfifo(path / "pipe.safetensors")  # opening it would block forever
    return path, ["pipe.safetensors", "not a regular file"]


CASES: list[Callable[[Path], tuple[Path, list[str]]]] = [
    truncated, shape_lie, huge_rank_shape, overlap, beyond_end, gap, trailing_bytes, absurd_header_length, header_longer_than_file,
    tiny_file, unknown_dtype, negative_shape, float_and_bool_shapes, header_not_json, deeply_nested_header,
    duplicate_key_in_header, bad_metadata, parent_escape, dotdot_plain, absolute_path, drive_letter,
    backslash_escape, symlink_out, symlinked_single_file_out, missing_shards, duplicate_across_shards,
    index_points_elsewhere, index_lists_absent_tensor, header_name_not_in_index, index_not_json,
    index_weight_map_not_object, index_value_not_string, index_to_pickle, shard_is_directory, shard_is_fifo,
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_hostile_checkpoint_is_refused_before_reading_any_tensor(tmp_path: Path, case) -> None:
    path, needles = case(tmp_path)
    with recording_opens() as opened, pytest.raises(CheckpointError) as info:
        HFCheckpointReader(path)
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    inside = str(path.resolve()) + os.sep
    assert all(p.startswith(inside) for p in opened), opened
    assert not any(p.endswith("secret.safetensors") for p in opened)


def test_invalid_config_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "ckpt", {SHARD: {"w": torch.ones(2)}})
    (path / "config.json").write_text('{\n  "hidden_size": 4,\n  "vocab_size": ,\n}')
    reader = HFCheckpointReader(path)
    with pytest.raises(CheckpointError, match=r"config.json: invalid JSON at line 3, column 17"):
        reader.config()
