"""bridge.config_cache: resolved HF configs on disk. A second resolution of the same config.json is a hit that
builds the same provider; a changed config.json, custom code file or transformers is a miss; a damaged entry is a
miss (logged) and is written again; ``$MCORE_COMPAT_CONFIG_CACHE=off`` turns it off; and a warm offline
``convert`` / ``export`` process never imports transformers."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import config_cache
from bridge.auto_bridge import AutoBridge
from bridge.megatron_ckpt.writer import provider_record
from bridge.resolved_config import ResolvedConfig
from bridge.streaming.convert import family_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "config-cache"
    monkeypatch.setenv(config_cache.CONFIG_CACHE_ENV, str(root))
    return root


@pytest.fixture
def checkpoint(tmp_path: Path, tiny_llama_checkpoint: Path) -> Path:
    """A private copy of the tiny Llama's config (tests edit it)."""
    out = tmp_path / "hf"
    out.mkdir()
    shutil.copy(tiny_llama_checkpoint / "config.json", out / "config.json")
    return out


def _open(path: Path) -> AutoBridge:
    return AutoBridge.from_hf_pretrained(path, config_cache=True)


def test_the_second_resolution_is_a_hit_with_the_same_provider(cache: Path, checkpoint: Path) -> None:
    first = _open(checkpoint)
    assert not isinstance(first.hf_config, ResolvedConfig)  # the cold run keeps transformers' own object
    assert len(list(cache.rglob("*.json"))) == 1
    second = _open(checkpoint)
    assert isinstance(second.hf_config, ResolvedConfig)
    assert provider_record(family_of(second)[1]) == provider_record(family_of(first)[1])
    assert vars(second.hf_config) == vars(first.hf_config)
    plain = AutoBridge.from_hf_pretrained(checkpoint)  # the public default never hands out a cached config
    assert not isinstance(plain.hf_config, ResolvedConfig)


def test_a_changed_config_json_is_a_miss(cache: Path, checkpoint: Path) -> None:
    _open(checkpoint)
    data = json.loads((checkpoint / "config.json").read_text())
    data["rms_norm_eps"] = 1e-5
    (checkpoint / "config.json").write_text(json.dumps(data))
    assert config_cache.lookup(checkpoint) is None
    reopened = _open(checkpoint)
    assert not isinstance(reopened.hf_config, ResolvedConfig) and reopened.hf_config.rms_norm_eps == 1e-5
    assert len(list(cache.rglob("*.json"))) == 2


def test_a_changed_code_file_or_transformers_is_a_miss(cache: Path, checkpoint: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _open(checkpoint)
    assert config_cache.lookup(checkpoint) is not None
    (checkpoint / "modeling_custom.py").write_text("# custom code beside the config\n")
    assert config_cache.lookup(checkpoint) is None
    (checkpoint / "modeling_custom.py").unlink()
    assert config_cache.lookup(checkpoint) is not None
    real = config_cache._transformers_identity()
    monkeypatch.setattr(config_cache, "_transformers_identity", lambda: {**real, "transformers": "99.0.0"})
    assert config_cache.lookup(checkpoint) is None


def test_a_damaged_entry_is_a_logged_miss_and_is_written_again(cache: Path, checkpoint: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    _open(checkpoint)
    (entry,) = cache.rglob("*.json")
    good = entry.read_text()
    for damage in (good[: len(good) // 2], "[]", json.dumps({**json.loads(good), "key": "other"}),
                   json.dumps({**json.loads(good), "snapshot": {"instance": {"x": {"nope": 1}}}})):
        entry.write_text(damage)
        with caplog.at_level(logging.DEBUG, logger="bridge"):
            assert config_cache.lookup(checkpoint) is None
        assert "damaged entry" in caplog.text
        caplog.clear()
        assert not isinstance(_open(checkpoint).hf_config, ResolvedConfig)
        assert entry.read_text() == good
    assert not [p for p in entry.parent.iterdir() if p.name.endswith(".tmp")]  # written through a rename


def test_the_cache_can_be_turned_off(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config_cache.CONFIG_CACHE_ENV, "off")
    assert config_cache.cache_dir() is None
    _open(checkpoint)
    assert not isinstance(_open(checkpoint).hf_config, ResolvedConfig)


def test_it_moves_with_the_project_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config_cache.CONFIG_CACHE_ENV, raising=False)
    monkeypatch.setenv("MCORE_COMPAT_CACHE", str(tmp_path / "root"))
    assert config_cache.cache_dir() == tmp_path / "root" / "hf-configs"


def test_work_that_needs_the_real_config_falls_back_to_it(cache: Path, checkpoint: Path) -> None:
    _open(checkpoint)
    auto = _open(checkpoint)
    assert isinstance(auto.hf_config, ResolvedConfig)
    seen = []

    def work(bridge: AutoBridge) -> int:
        seen.append(type(bridge.hf_config).__name__)
        return bridge.hf_config.get_text_config().hidden_size  # a method: only transformers' object has it

    assert config_cache.with_real_config(auto, work) == 64
    assert seen == ["ResolvedConfig", "LlamaConfig"]


_PROBE = """
import sys
from harness.cli import main
rc = main(sys.argv[1:])
print("RC", rc)
print("TRANSFORMERS", sorted(m for m in sys.modules if m == "transformers" or m.startswith("transformers.")))
"""


def _cli(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert "RC 0" in proc.stdout, proc.stderr[-3000:]
    return proc.stdout


def test_a_warm_convert_and_export_never_import_transformers(tmp_path: Path, tiny_llama_checkpoint: Path,
                                                            cache: Path) -> None:
    """The start-up this cache exists for: once a config has been resolved (here in this process, as a first
    ``convert`` would), the next processes (convert, export of its layout, convert --format torch_dist) do not
    import transformers at all."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), config_cache.CONFIG_CACHE_ENV: str(cache)}
    _open(tiny_llama_checkpoint)  # the cold resolution, which stores the entry
    warm = _cli("convert", str(tiny_llama_checkpoint), str(tmp_path / "layout"), "--no-progress", env=env)
    assert "TRANSFORMERS []" in warm, warm
    exported = _cli("export", str(tmp_path / "layout"), str(tmp_path / "back"), "--no-progress", env=env)
    assert "TRANSFORMERS []" in exported, exported
    dist = _cli("convert", str(tiny_llama_checkpoint), str(tmp_path / "dist"), "--format", "torch_dist",
                "--no-progress", env=env)
    assert "TRANSFORMERS []" in dist, dist
    from safetensors.torch import load_file

    source, back = load_file(tiny_llama_checkpoint / "model.safetensors"), load_file(tmp_path / "back" /
                                                                                   "model.safetensors")
    assert sorted(back) == sorted(source) and all(back[k].equal(source[k]) for k in source)
