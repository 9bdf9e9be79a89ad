"""harness.probes.sweep (with runner and cachekeys): broken revisions become results, the sweep goes on,
resumes from the cache, recomputes a corrupt entry, and an interruption keeps finished work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.probes.cachekeys import ProbeCache
from harness.probes.envs import prepare_revision
from harness.probes.runner import ProbeResult, run_probe
from harness.probes.sweep import run_sweep, run_sweep_report
from tests.harness.probes.conftest import pid_alive

TEST = "family:llama"  # any family test: the payload imports megatron.core before its body


def _entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "probes").rglob("*.json"))


def test_broken_revisions_become_results_and_the_sweep_resumes(broken_revisions, tmp_path):
    cache = tmp_path / "cache"
    specs = [f"path:{broken_revisions[n]}" for n in ("importerr", "segv", "syntax")]
    report = run_sweep_report(specs, tests=[TEST], jobs=3, timeout_s=180, cache_dir=cache, progress=False)
    by_name = {Path(r.spec.removeprefix("path:")).name: r for r in report.results}
    assert [r.status for r in report.results] == ["error"] * 3
    assert by_name["importerr"].details.startswith("import failed: ImportError: broken on purpose")
    assert by_name["segv"].details.startswith("crashed: signal SIGSEGV")
    assert by_name["syntax"].details.startswith("import failed: SyntaxError")
    assert "Segmentation fault" in by_name["segv"].log_tail
    assert report.new_probes == 3 and len(_entries(cache)) == 3
    assert [t.probes for t in report.revisions] == [1, 1, 1]
    assert all(t.wall_s > 0 and t.probe_s > 0 for t in report.revisions)

    again = run_sweep_report(specs, tests=[TEST], jobs=3, timeout_s=180, cache_dir=cache, progress=False)
    assert again.new_probes == 0 and [r.cached for r in again.results] == [True] * 3
    assert [r.details for r in again.results] == [r.details for r in report.results]

    victim = _entries(cache)[0]
    victim.write_bytes(victim.read_bytes()[:-5] + b"xxxxx")  # checksum no longer matches
    third = run_sweep_report(specs, tests=[TEST], jobs=3, timeout_s=180, cache_dir=cache, progress=False)
    assert third.new_probes == 1 and sorted(r.status for r in third.results) == ["error"] * 3
    assert ProbeCache(cache).store.get(victim.stem) is not None  # rewritten, valid again


@pytest.mark.slow
def test_refresh_reruns_cached_results(broken_revisions, tmp_path):
    cache = tmp_path / "cache"
    spec = f"path:{broken_revisions['importerr']}"
    prepared = prepare_revision(spec, cache_dir=cache)
    from harness.probes.cachekeys import key_for

    fake = ProbeResult(prepared.spec, TEST, "passed", details="planted")
    ProbeCache(cache).put(key_for(prepared, TEST, "cpu"), fake)
    cached = run_sweep([spec], tests=[TEST], cache_dir=cache, progress=False)
    assert cached[0].cached and cached[0].details == "planted"
    fresh = run_sweep([spec], tests=[TEST], cache_dir=cache, refresh=True, progress=False, timeout_s=180)
    assert not fresh[0].cached and fresh[0].status == "error"


def test_interrupt_kills_running_probes_and_keeps_finished_ones(broken_revisions, tmp_path):
    cache = tmp_path / "cache"
    pid_file = broken_revisions["hang"] / "megatron" / "core" / "grandchild.pid"
    specs = [f"path:{broken_revisions['abort']}", f"path:{broken_revisions['hang']}"]

    def interrupt(result: ProbeResult) -> None:
        deadline = time.monotonic() + 120
        while not pid_file.exists() and time.monotonic() < deadline:  # the hanging probe is in MCore now
            time.sleep(0.1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep_report(specs, tests=[TEST], jobs=2, timeout_s=300, cache_dir=cache, progress=False,
                         on_result=interrupt)
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(grandchild), "the hanging probe's process group survived the interruption"
    assert len(_entries(cache)) == 1  # the finished probe only; the killed one is not cached as a crash
    resumed = run_sweep_report(specs[:1], tests=[TEST], cache_dir=cache, progress=False)
    assert resumed.new_probes == 0
    assert resumed.results[0].details.startswith("crashed: signal SIGABRT")


def test_unpreparable_revision_gives_error_results_not_cached(tmp_path):
    cache = tmp_path / "cache"
    folder = cache / "pypi" / "0.9.0"
    folder.mkdir(parents=True)
    (folder / "megatron_core-0.9.0-py3-none-any.whl").write_bytes(b"not a zip file")
    results = run_sweep(["pypi:0.9.0"], tests=["import", TEST], cache_dir=cache, progress=False)
    assert [r.status for r in results] == ["error", "error"]
    assert all(r.details.startswith("prepare failed: pip install") for r in results)
    assert _entries(cache) == []


@pytest.mark.slow
def test_real_probe_of_the_installed_release(tmp_path):
    prepared = prepare_revision("installed", cache_dir=tmp_path)
    result = run_probe(prepared, "import", timeout_s=600)
    assert result.status == "passed", result.log_tail
    assert set(result.rows) >= {"transformer_config", "gpt_model"}
    assert result.meta["mcore_version"] == prepared.version and result.meta["torch"]
