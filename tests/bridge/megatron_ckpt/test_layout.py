"""The torch_dist directory layout: locating the iteration, strict tracker and record, writer versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.errors import CheckpointError
from bridge.megatron_ckpt.layout import (
    RECORD_FILE,
    TRACKER_FILE,
    check_writer_version,
    iteration_dir_name,
    locate,
    read_record,
)


def _checkpoint(root: Path, iteration: str = "0") -> Path:
    directory = root / iteration_dir_name(int(iteration) if iteration.isdigit() else 0)
    directory.mkdir(parents=True)
    (directory / "metadata.json").write_text(json.dumps({"sharded_backend": "torch_dist"}))
    (directory / ".metadata").write_bytes(b"")
    (root / TRACKER_FILE).write_text(iteration)
    return root


def test_locate_from_the_root_or_the_iteration_directory(tmp_path: Path) -> None:
    root = _checkpoint(tmp_path / "c", "1200")
    assert locate(root).iteration == 1200 and locate(root).iteration_dir == root / "iter_0001200"
    assert locate(root / "iter_0001200").root == root


def test_a_release_tracker_needs_a_release_directory(tmp_path: Path) -> None:
    root = _checkpoint(tmp_path / "c")
    (root / TRACKER_FILE).write_text("release")
    with pytest.raises(CheckpointError, match=r"points at release, but .* does not exist \(found \['iter_0000000'\]\)"):
        locate(root)


def test_another_sharded_backend_is_named(tmp_path: Path) -> None:
    root = _checkpoint(tmp_path / "c")
    (root / "iter_0000000" / "metadata.json").write_text(json.dumps({"sharded_backend": "zarr"}))
    with pytest.raises(CheckpointError, match="names the sharded backend 'zarr'; only 'torch_dist'"):
        locate(root)


def test_a_folder_that_is_no_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="has no latest_checkpointed_iteration.txt"):
        locate(tmp_path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r.update(format="other"), "expected format"),
    (lambda r: r.update(version=2), "upgrade mcore-compat"),
    (lambda r: r.update(params=[]), "field 'params' must be a dict"),
    (lambda r: r.pop("mcore_version"), "field 'mcore_version' must be a str"),
])
def test_the_record_is_read_strictly(tmp_path: Path, edit, message: str) -> None:
    root = _checkpoint(tmp_path / "c")
    record = {"format": "mcore-compat.megatron-checkpoint", "version": 1, "mcore_version": "0.16.1",
              "model_class": "gpt", "architecture": "LlamaForCausalLM", "provider": {}, "parallel": {},
              "vocab_padding": {}, "params": {}}
    assert read_record(locate(root)) is None  # Megatron-LM's own checkpoints have none
    (root / RECORD_FILE).write_text(json.dumps(record))
    assert read_record(locate(root)) == record
    edit(record)
    (root / RECORD_FILE).write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=message):
        read_record(locate(root))


@pytest.mark.parametrize(("writer", "installed", "refused"), [
    ("0.16.1", "0.16.1", False), ("0.15.0", "0.16.1", False), ("0.19.2", "0.16.1", True),
    ("0.16.1rc0", "0.16.1", False), ("0.17.0", "0.16.1+local", True),
])
def test_a_newer_writer_is_refused(writer: str, installed: str, refused: bool) -> None:
    record = {"mcore_version": writer}
    if refused:
        with pytest.raises(CheckpointError, match=f"written by megatron-core {writer}, newer than the installed"):
            check_writer_version(record, installed, source=Path("ckpt"))
    else:
        check_writer_version(record, installed, source=Path("ckpt"))
