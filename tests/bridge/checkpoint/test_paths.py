"""Path safety: accepted member names are single components under POSIX and Windows rules alike."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from bridge.checkpoint.paths import CheckpointDir, check_member_name
from bridge.errors import CheckpointError

TRICKY = ["..", ".", "", "../x", "a/b", "a\\b", "C:x", "C:\\x", "\\\\srv\\s", "/etc/passwd", "x\x00y", "\ud800",
          "~", "~root", "...", "..x", "x..", " ..", "con", "a:b", "\tx", "model.safetensors"]  # fmt: skip


def member_names() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(TRICKY), st.text(max_size=12), st.text(alphabet="./\\:~ xC", max_size=8))


@given(name=member_names())
def test_accepted_names_are_one_plain_component(name: str) -> None:
    try:
        check_member_name(name, context="test")
    except CheckpointError as exc:  # a refusal says what it refused and what it expected
        event("refused")
        assert str(exc).startswith(f"test: {name!r:.120}") and "expected a plain file name" in str(exc)
        return
    event("accepted")
    assert name not in {".", ".."}
    for root in (PurePosixPath("/ckpt"), PureWindowsPath("C:/ckpt")):
        joined = root / name
        assert joined.parent == root and joined.name == name


def test_non_strings_are_refused() -> None:
    for value in (None, 3, ["a"], {"a": 1}):
        with pytest.raises(CheckpointError, match="expected a file name"):
            check_member_name(value, context="test")


def test_member_follows_symlinks_only_inside(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    root = tmp_path / "ckpt"
    root.mkdir()
    (root / "real.safetensors").write_text("x")
    (root / "alias.safetensors").symlink_to("real.safetensors")
    (root / "alias2.safetensors").symlink_to(root / "alias.safetensors")
    (root / "out.safetensors").symlink_to(tmp_path / "outside.txt")
    (root / "loop.safetensors").symlink_to("loop.safetensors")
    directory = CheckpointDir.resolve(root)
    assert directory.member("alias2.safetensors", context="t") == (root / "real.safetensors").resolve()
    assert directory.member("absent.safetensors", context="t") is None
    with pytest.raises(CheckpointError, match="outside the checkpoint directory"):
        directory.member("out.safetensors", context="t")
    with pytest.raises(CheckpointError):
        directory.member("loop.safetensors", context="t")


def test_a_symlinked_directory_is_resolved_first(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.safetensors").write_text("x")
    os.symlink(tmp_path / "real", tmp_path / "link")
    directory = CheckpointDir.resolve(tmp_path / "link")
    assert directory.path == (tmp_path / "real").resolve()
    assert directory.member("a.safetensors", context="t") == directory.path / "a.safetensors"
