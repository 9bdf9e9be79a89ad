"""Atomic export: a failure at any point leaves no partial output and never damages an existing directory."""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import bridge.checkpoint.atomic as atomic_module
import bridge.checkpoint.writer as writer_module
from bridge.checkpoint import HFCheckpointReader, HFCheckpointWriter
from bridge.errors import CheckpointError

REPO = Path(__file__).resolve().parents[3]


def _fingerprint(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path`` (the identity of a directory's content)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))
            if p.is_file()}  # fmt: skip


def _export(out: Path, count: int = 6, **kwargs) -> Path:
    with HFCheckpointWriter(out, max_shard_size=100, durable=False, **kwargs) as writer:
        for i in range(count):
            writer.add(f"w{i}", torch.full((10,), float(i)))  # 40 bytes: two per shard
    return out


@pytest.fixture()
def existing(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    out = _export(tmp_path / "model", count=9)
    (out / "config.json").write_text('{"old": true}')
    return out, _fingerprint(out)


def _failing_writes(monkeypatch: pytest.MonkeyPatch, at: int, exc: BaseException) -> None:
    real, calls = writer_module._write_bytes, [0]

    def write(handle, data):
        calls[0] += 1
        if calls[0] == at:
            raise exc
        real(handle, data)

    monkeypatch.setattr(writer_module, "_write_bytes", write)


@pytest.mark.parametrize("at", [1, 4, 7], ids=["first-shard", "middle-shard", "last-shard-in-close"])
def test_disk_full_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    _failing_writes(monkeypatch, at, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        _export(tmp_path / "deep" / "model")
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # no staging dir, and the parents we created are gone too


@pytest.mark.parametrize("at", [2, 7])
def test_disk_full_never_damages_the_existing_checkpoint(
    existing: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    out, before = existing
    _failing_writes(monkeypatch, at, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(CheckpointError):
        _export(out, overwrite=True)
    assert _fingerprint(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]


def test_keyboard_interrupt_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_writes(monkeypatch, 3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        _export(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_exception_in_the_caller_discards_the_export(existing: tuple[Path, dict[str, str]]) -> None:
    out, before = existing
    with pytest.raises(RuntimeError, match="mapping failed"):
        with HFCheckpointWriter(out, overwrite=True, max_shard_size=100, durable=False) as writer:
            writer.add("w", torch.ones(40))
            raise RuntimeError("mapping failed")
    assert _fingerprint(out) == before
    with pytest.raises(CheckpointError, match="writer is closed"):
        writer.add("v", torch.ones(1))


def test_existing_target_is_untouched_without_overwrite(existing: tuple[Path, dict[str, str]]) -> None:
    out, before = existing
    with pytest.raises(CheckpointError, match="pass overwrite=True"):
        HFCheckpointWriter(out)
    assert _fingerprint(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["model"]


def test_overwrite_replaces_the_old_checkpoint_completely(existing: tuple[Path, dict[str, str]]) -> None:
    out, before = existing
    assert "model-00005-of-00005.safetensors" in before
    _export(out, count=2, overwrite=True, config={"new": True})
    assert sorted(_fingerprint(out)) == ["config.json", "model.safetensors"]  # no stale shard or index
    assert (out / "config.json").read_text().strip() == '{\n  "new": true\n}'
    assert HFCheckpointReader(out).keys() == ["w0", "w1"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]  # the old copy was deleted


def test_an_empty_existing_directory_is_used_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    _export(tmp_path / "model", count=1)
    assert HFCheckpointReader(tmp_path / "model").keys() == ["w0"]


def test_a_directory_that_is_not_a_checkpoint_is_never_replaced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(CheckpointError, match="does not look like a checkpoint"):
        HFCheckpointWriter(home, overwrite=True)
    assert (home / "thesis.tex").read_text() == "years of work"
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        HFCheckpointWriter(tmp_path / "file", overwrite=True)


def test_failed_swap_puts_the_old_checkpoint_back(
    existing: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, before = existing
    real_rename, calls = os.rename, []

    def rename(src, dst):
        names = (Path(src).name, Path(dst).name)
        if "model" in names:
            calls.append(names)
            if names[0].startswith(".model.tmp-"):  # old aside worked; new -> target fails
                raise OSError(errno.EIO, "I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(atomic_module.os, "rename", rename)
    with pytest.raises(OSError, match="I/O error"):
        _export(out, count=1, overwrite=True)
    aside = calls[0][1]
    assert calls[0] == ("model", aside) and aside.startswith(".model.old-")
    assert calls[1][1] == "model" and calls[2] == (aside, "model") and len(calls) == 3
    monkeypatch.undo()
    assert _fingerprint(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["model"]


def test_a_writer_that_is_dropped_unclosed_removes_its_staging_directory(tmp_path: Path) -> None:
    writer = HFCheckpointWriter(tmp_path / "model", max_shard_size=10, durable=False)
    writer.add("w", torch.ones(8))
    assert len(list(tmp_path.iterdir())) == 1
    del writer
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_a_real_sigint_during_export_leaves_the_old_checkpoint_intact(existing: tuple[Path, dict[str, str]]) -> None:
    out, before = existing
    script = textwrap.dedent(f"""
        import signal, sys, time, torch
        from bridge.checkpoint import HFCheckpointWriter
        # Ctrl-C's default action, even where the parent runs with SIGINT ignored (a background job of a
        # non-interactive shell, as CI may start the suite): that state is inherited and Python keeps it
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with HFCheckpointWriter({str(out)!r}, overwrite=True, max_shard_size=100, durable=False) as writer:
            for i in range(10_000):
                writer.add(f"w{{i}}", torch.full((10,), float(i)))
                if i == 50:
                    print("writing", flush=True)
                time.sleep(0.002)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    assert _fingerprint(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["model"]


def test_re_exporting_a_checkpoint_over_itself(existing: tuple[Path, dict[str, str]]) -> None:
    out, before = existing
    reader = HFCheckpointReader(out)
    with HFCheckpointWriter(out, overwrite=True, source_dir=out, max_shard_size=1000, durable=False) as writer:
        for name in reader.keys():
            writer.add(name, reader.get(name) * 2)  # reads the old files while the new ones are staged
    assert (out / "config.json").read_text() == '{"old": true}'
    new = HFCheckpointReader(out)
    assert new.keys() == reader.keys() and new.files() == ["model.safetensors"]
    assert torch.equal(new.get("w3"), torch.full((10,), 6.0))
    assert _fingerprint(out) != before and sorted(p.name for p in out.parent.iterdir()) == ["model"]


def test_a_writer_never_targets_its_input_or_a_folder_around_or_inside_it(tmp_path: Path) -> None:
    from bridge.checkpoint.atomic import check_not_an_input

    src = tmp_path / "src"
    src.mkdir()
    for target, relation in [(src, "is"), (src / "out", "is inside"), (tmp_path, "holds")]:
        with pytest.raises(CheckpointError, match=f"it {relation} the input"):
            check_not_an_input(target, [None, src], action="export")
    check_not_an_input(tmp_path / "elsewhere", [src, None], action="export")  # a sibling is fine
    check_not_an_input(tmp_path / "src-2", [src], action="export")  # a shared name prefix is not containment
