"""`mcore-compat convert` / `export` wire bridge.streaming to the CLI: bit-exact round trip, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from tests.helpers.tiny import make_hf_checkpoint


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hf_checkpoint(tmp_path_factory.mktemp("cli-convert") / "hf", seed=3)


def test_convert_then_export_restores_the_checkpoint(hf: Path, tmp_path: Path, capsys) -> None:
    assert main(["convert", str(hf), str(tmp_path / "m"), "--tp", "2", "--pp", "2", "--no-progress"]) == 0
    assert "TP=2, PP=2" in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "layout.json").read_text())["tp"] == 2
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "back"), "--max-shard-size", "100KB",
                 "--no-progress"]) == 0
    assert "file(s)" in capsys.readouterr().out
    assert (tmp_path / "back" / "model.safetensors.index.json").is_file()
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "one"), "--no-progress"]) == 0
    assert (tmp_path / "one" / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes()


def test_a_layout_that_does_not_fit_is_a_usage_error_and_writes_nothing(hf: Path, tmp_path: Path, capsys) -> None:
    assert main(["convert", str(hf), str(tmp_path / "m"), "--tp", "3", "--no-progress"]) == 2
    assert "num_query_groups" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_existing_output_without_overwrite_is_exit_1(hf: Path, tmp_path: Path, capsys) -> None:
    assert main(["convert", str(hf), str(tmp_path / "m"), "--no-progress"]) == 0
    assert main(["convert", str(hf), str(tmp_path / "m"), "--no-progress"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", str(hf), str(tmp_path / "m"), "--dtype", "bf16", "--overwrite", "--no-progress"]) == 0
    assert json.loads((tmp_path / "m" / "layout.json").read_text())["params"]["output_layer.weight"]["dtype"] \
        == "bfloat16"
    assert main(["export", str(hf), str(tmp_path / "x"), "--no-progress"]) == 1
    assert "layout.json" in capsys.readouterr().err
