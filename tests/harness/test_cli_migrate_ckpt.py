"""``mcore-compat migrate-ckpt``: argument checks before any work, DST never replaced, an in-process run when
the target release is the installed one (other releases run in a subprocess: test_ckpt_compat_release.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import compat
from harness.cli import main

INSTALLED = str(compat.installed_version())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bridge.auto_bridge import AutoBridge
    from bridge.runtime import reset_model_parallel
    from tests.helpers.tiny import make_hf_checkpoint

    root = tmp_path_factory.mktemp("cli-migrate")
    reset_model_parallel()
    out = AutoBridge.import_ckpt(make_hf_checkpoint(root / "hf", seed=2), root / "mc", durable=False,
                                 offline=False)
    reset_model_parallel()
    return out


def test_an_unknown_release_is_a_usage_error(checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert main(["migrate-ckpt", str(checkpoint), str(tmp_path / "out"), "--to", "0.7.0"]) == 2
    assert "--to expects a release among 0.8.0.." in capsys.readouterr().err


def test_a_dst_holding_files_is_refused_before_anything_is_prepared(checkpoint: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "thesis.txt").write_text("mine")
    assert main(["migrate-ckpt", str(checkpoint), str(tmp_path / "dst"), "--to", "0.19.2"]) == 1
    assert "DST must be a new or empty directory" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "dst").iterdir()] == ["thesis.txt"]


def test_the_installed_release_migrates_in_process(checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert main(["migrate-ckpt", str(checkpoint), str(tmp_path / "out"), "--to", INSTALLED]) == 0
    assert f"(megatron-core {INSTALLED}, gpt): 0 storage keys moved" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "mcore_compat.json").read_text())["mcore_version"] == INSTALLED
