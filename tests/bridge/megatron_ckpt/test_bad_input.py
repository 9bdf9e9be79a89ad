"""Bad torch_dist input gets a clear error naming the file and the fix, and leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bridge.auto_bridge import AutoBridge
from bridge.errors import CheckpointError
from bridge.megatron_ckpt.layout import RECORD_FILE, TRACKER_FILE

import_ckpt, export_ckpt = AutoBridge.import_ckpt, AutoBridge.export_ckpt

pytestmark = pytest.mark.usefixtures("fresh_parallel_state")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from bridge.runtime import reset_model_parallel
    from tests.helpers.tiny import make_hf_checkpoint

    root = tmp_path_factory.mktemp("bad-input")
    hf = make_hf_checkpoint(root / "hf", seed=8)
    reset_model_parallel()
    out = import_ckpt(hf, root / "mc")
    reset_model_parallel()
    return hf, out


@pytest.fixture
def ckpt(pristine, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine[1], tmp_path / "src" / "mc"))


def _refused(ckpt: Path, tmp_path: Path, *patterns: str) -> None:
    with pytest.raises(CheckpointError) as info:
        export_ckpt(ckpt, tmp_path / "out")
    for pattern in patterns:
        assert pattern in str(info.value), str(info.value)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_truncated_distcp_file(ckpt: Path, tmp_path: Path) -> None:
    shard = max((ckpt / "iter_0000000").glob("*.distcp"), key=lambda p: p.stat().st_size)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    _refused(ckpt, tmp_path, str(shard), "truncated")


def test_a_missing_metadata_json(ckpt: Path, tmp_path: Path) -> None:
    (ckpt / "iter_0000000" / "metadata.json").unlink()
    _refused(ckpt, tmp_path, str(ckpt / "iter_0000000" / "metadata.json"), "is missing")


def test_a_tracker_pointing_at_a_missing_iteration(ckpt: Path, tmp_path: Path) -> None:
    (ckpt / TRACKER_FILE).write_text("1200")
    _refused(ckpt, tmp_path, "points at iter_0001200", "found ['iter_0000000']")


def test_a_damaged_tracker(ckpt: Path, tmp_path: Path) -> None:
    (ckpt / TRACKER_FILE).write_text("latest please")
    _refused(ckpt, tmp_path, str(ckpt / TRACKER_FILE), "expected an iteration number")


def test_a_checkpoint_written_by_a_newer_mcore_names_the_writers_version(ckpt: Path, tmp_path: Path) -> None:
    record = json.loads((ckpt / RECORD_FILE).read_text())
    record["mcore_version"] = "99.1.0"
    (ckpt / RECORD_FILE).write_text(json.dumps(record))
    _refused(ckpt, tmp_path, "written by megatron-core 99.1.0", "newer than the installed")


def test_a_hidden_size_mismatch_names_the_tensor_and_both_shapes(pristine, tmp_path: Path) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    other = make_hf_checkpoint(tmp_path / "wide", seed=1, hidden_size=32, num_attention_heads=2,
                               num_key_value_heads=1)
    with pytest.raises(CheckpointError) as info:
        AutoBridge.from_hf_pretrained(other).load_megatron_model(pristine[1])
    message = str(info.value)
    assert "'decoder.final_layernorm.weight' has shape [64] in the checkpoint" in message
    assert "the model expects [32]" in message


def test_an_export_over_an_existing_directory_needs_overwrite(pristine, tmp_path: Path) -> None:
    export_ckpt(pristine[1], tmp_path / "out")
    before = (tmp_path / "out" / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(CheckpointError, match="already exists and is not empty; pass overwrite=True"):
        export_ckpt(pristine[1], tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").stat().st_mtime_ns == before
    export_ckpt(pristine[1], tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_checkpoint_without_a_record_needs_an_hf_config(ckpt: Path, tmp_path: Path, pristine) -> None:
    (ckpt / RECORD_FILE).unlink()
    shutil.rmtree(ckpt / "hf")
    _refused(ckpt, tmp_path, "name the model's HF config directory or Hub ID")
    out = export_ckpt(ckpt, tmp_path / "out", hf_config=pristine[0])  # args in common.pt are enough with it
    assert (out / "model.safetensors").read_bytes() == (pristine[0] / "model.safetensors").read_bytes()
