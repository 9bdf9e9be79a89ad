"""Fuzzing the reader: damaged bytes and hostile indexes only ever give a CheckpointError.

Byte damage (one flip, truncation or insertion in a valid file written by the reference library):

* the reader raises nothing but :class:`CheckpointError`;
* whenever it accepts a file, the reference ``safetensors`` library accepts it too and reads the very same
  tensors (our validation is never looser than the reference);
* whenever the reference library accepts a file whose header has no duplicate key, we accept it too (never
  needlessly stricter);
* a flip inside the data region is always accepted, shapes and dtypes are unchanged, and exactly the
  tensor covering the flipped byte differs, in exactly that byte;
* a truncation, and an insertion into the data region, are always refused.

Index fuzzing: random ``weight_map`` values (traversals, absolute paths, drive letters, symlinks in and out,
directories, junk) never make the reader open a file outside the directory or raise anything else.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save

from bridge.checkpoint import HFCheckpointReader
from bridge.errors import CheckpointError
from tests.bridge.checkpoint.builders import recording_opens, write_checkpoint
from tests.helpers.damage import Damage, damages, data_region_start, flips

BASE_TENSORS = {
    "embed": torch.arange(12, dtype=torch.float32).reshape(3, 4),
    "norm": torch.linspace(-1, 1, 6).to(torch.bfloat16),
    "ids": torch.arange(3, dtype=torch.int64),
    "mask": torch.tensor([1, 0, 1], dtype=torch.uint8),
}
BASE = save(BASE_TENSORS, metadata={"format": "pt"})
DATA_START = data_region_start(BASE)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _bits(tensor: torch.Tensor) -> bytes:
    return tensor.reshape(-1).view(torch.uint8).numpy().tobytes()


def _ours(directory: Path) -> dict[str, torch.Tensor] | CheckpointError:
    try:
        reader = HFCheckpointReader(directory)
        return reader.get_many(reader.keys())
    except CheckpointError as exc:  # anything else fails the test
        return exc


def _reference(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception:  # the reference library's own errors are not under test
        return None


def _has_duplicate_keys(data: bytes) -> bool:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise KeyError("duplicate")
        return dict(pairs)

    try:
        json.loads(data[8:data_region_start(data)].decode(), object_pairs_hook=hook)
    except KeyError:
        return True
    except Exception:
        return False
    return False


def _check(damage: Damage) -> dict[str, torch.Tensor] | CheckpointError:
    damaged = damage.apply(BASE)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(damaged)
        ours, reference = _ours(Path(tmp)), _reference(path)
    if isinstance(ours, dict):
        assert reference is not None, f"{damage}: we accepted what the reference library refuses"
        assert sorted(ours) == sorted(reference)
        for name, tensor in ours.items():
            assert tensor.dtype == reference[name].dtype and tensor.shape == reference[name].shape
            assert _bits(tensor) == _bits(reference[name])
    elif reference is not None:
        assert _has_duplicate_keys(damaged), f"{damage}: we refused a file the reference reads ({ours})"
    return ours


@FUZZ
@given(damage=damages(size=len(BASE)))
def test_byte_damage_gives_only_checkpoint_errors_and_never_a_looser_read(damage: Damage) -> None:
    result = _check(damage)
    event(f"{damage.kind}: {'accepted' if isinstance(result, dict) else 'refused'}")
    if damage.kind == "truncate" or (damage.kind == "insert" and damage.position >= DATA_START):
        assert isinstance(result, CheckpointError)


@settings(max_examples=60, deadline=None)
@given(damage=flips(size=len(BASE), start=DATA_START))
def test_a_flip_in_the_data_region_changes_exactly_that_byte(damage: Damage) -> None:
    result = _check(damage)
    assert isinstance(result, dict), result
    offset = damage.position - DATA_START
    start = 0
    for name in sorted(BASE_TENSORS, key=lambda n: (-BASE_TENSORS[n].dtype.itemsize, n)):  # the file's order
        original, got = BASE_TENSORS[name], result[name]
        assert got.dtype == original.dtype and got.shape == original.shape
        expected = bytearray(_bits(original))
        if start <= offset < start + len(expected):
            expected[offset - start] ^= damage.payload[0]
        assert _bits(got) == bytes(expected), name
        start += len(expected)


# ----------------------------------------------------------------------------------------- index fuzzing
SHARDS = {"model-00001-of-00002.safetensors": {"a": torch.ones(2)},
          "model-00002-of-00002.safetensors": {"b": torch.zeros(3)}}  # fmt: skip
HOSTILE_VALUES = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                  "../outside/secret.safetensors",
                  "OUTSIDE_ABSOLUTE", "C:\\secret.safetensors", "c:secret.safetensors", "\\\\server\\share.safetensors",
                  "sub/../model-00001-of-00002.safetensors", "link-out.safetensors", "link-in.safetensors",
                  "dir.safetensors", "dangling.safetensors", "missing.safetensors", "..", ".", "", "model.bin",
                  "./model-00001-of-00002.safetensors", "model-00001-of-00002.safetensors\x00.txt",
                  "%2e%2e%2fsecret.safetensors", "~/secret.safetensors"]  # fmt: skip
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))


def weight_map_values() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(HOSTILE_VALUES), st.sampled_from(HOSTILE_VALUES), st.text(max_size=20),
                     JSON_LEAVES, st.lists(st.text(max_size=5), max_size=2))  # fmt: skip


def nearly_valid_weight_maps() -> st.SearchStrategy[dict[str, Any]]:
    """The valid map with at most one value replaced and at most one entry added."""
    valid = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    edits = st.tuples(st.sampled_from(["a", "b", None]), weight_map_values(),
                      st.one_of(st.none(), st.tuples(st.sampled_from(["c", "a.b"]), weight_map_values())))  # fmt: skip

    def apply(edit: tuple[str | None, Any, tuple[str, Any] | None]) -> dict[str, Any]:
        key, value, extra = edit
        out = dict(valid)
        if key is not None:
            out[key] = value
        if extra is not None:
            out[extra[0]] = extra[1]
        return out

    return edits.map(apply)


def indexes() -> st.SearchStrategy[Any]:
    names = st.one_of(st.sampled_from(["a", "b", "c"]), st.text(max_size=6))
    weight_maps = st.one_of(nearly_valid_weight_maps(), st.dictionaries(names, weight_map_values(), max_size=5))
    well_formed = st.fixed_dictionaries({"metadata": st.dictionaries(st.text(max_size=5), JSON_LEAVES, max_size=2),
                                         "weight_map": weight_maps})  # fmt: skip
    misplaced = st.dictionaries(st.text(max_size=8), weight_maps, max_size=2)
    return st.one_of(well_formed, well_formed, misplaced, JSON_LEAVES)


def _hostile_directory(root: Path) -> Path:
    outside = write_checkpoint(root / "outside", {"secret.safetensors": {"a": torch.ones(2)}}, index=False)
    directory = write_checkpoint(root / "ckpt", SHARDS)
    (directory / "link-out.safetensors").symlink_to(outside / "secret.safetensors")
    (directory / "link-in.safetensors").symlink_to(directory / "model-00001-of-00002.safetensors")
    (directory / "dangling.safetensors").symlink_to(root / "nowhere.safetensors")
    (directory / "dir.safetensors").mkdir()
    return directory


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=indexes())
def test_random_indexes_never_escape_the_directory(index: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = _hostile_directory(Path(tmp))
        outside = str(Path(tmp, "outside", "secret.safetensors"))
        text = json.dumps(index).replace("OUTSIDE_ABSOLUTE", outside)
        (directory / "model.safetensors.index.json").write_text(text)
        with recording_opens() as opened:
            result = _ours(directory)
        event("accepted" if isinstance(result, dict) else "refused")
        inside = str(directory.resolve()) + os.sep
        assert all(p.startswith(inside) for p in opened), opened
        if isinstance(result, dict):
            weight_map = json.loads(text)["weight_map"]
            assert sorted(result) == sorted(weight_map)
            reader = HFCheckpointReader(directory)
            assert all((directory / f).resolve().is_relative_to(directory.resolve()) for f in reader.files())
