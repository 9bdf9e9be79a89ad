"""harness.cache: checksummed JSON entries; corrupt ones are dropped and counted."""

from __future__ import annotations

import json

from harness.cache import JsonCache, default_cache_dir, stable_hash


def test_round_trip_and_stats(tmp_path):
    cache = JsonCache(tmp_path)
    assert cache.get("k" * 64) is None
    cache.put("k" * 64, {"a": [1, 2]})
    assert cache.get("k" * 64) == {"a": [1, 2]}
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (1, 1, 1)


def test_corruption_is_detected(tmp_path):
    cache = JsonCache(tmp_path)
    key = stable_hash("x")
    cache.put(key, {"v": 1})
    path = cache.path_for(key)
    header, body = path.read_text().split("\n", 1)
    path.write_text(header + "\n" + body.replace("1", "2"))  # valid JSON, wrong checksum
    assert cache.get(key) is None and cache.stats.corrupt == 1 and not path.exists()
    cache.put(key, {"v": 1})
    path.write_text(path.read_text()[:-5])  # truncated
    assert cache.get(key) is None and cache.stats.corrupt == 2
    cache.put(key, {"v": 1})
    path.write_text(json.dumps({"v": 1}))  # no header line
    assert cache.get(key) is None and cache.stats.corrupt == 3
    assert cache.stats.hits == 0


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MCORE_COMPAT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("MCORE_COMPAT_CACHE")
    assert default_cache_dir().name == "mcore-compat"
