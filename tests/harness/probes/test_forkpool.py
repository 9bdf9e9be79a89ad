"""harness.probes.forkpool and forkserver, through the runner: a probe forked from a warm server of the real
MCore 0.16.1 (``installed``) is judged exactly as one in a fresh interpreter (crash, exit, exception, hang,
a real probe), and what a probe leaves behind never reaches the next one.

One server serves the whole module (its warm-up, ~10-25 s of imports, is paid once); the fresh runs of the
misbehaving payload import nothing heavy, and one real ``import`` probe runs fresh for the comparison.
Broken revisions (a server that cannot warm up, so the runner falls back to fresh interpreters) are
test_sweep.py's, which runs with the default launch.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.errors import ProbeError
from harness.probes import forkpool
from harness.probes.envs import prepare_revision
from harness.probes.forkpool import LAUNCH_ENV, launch_mode, warm_server
from harness.probes.runner import _child_env, run_probe
from tests.harness.probes.conftest import pid_alive
from tests.harness.probes.misbehaving_payload import LEAKED_SEED, MARK_ENV

MISBEHAVING = "tests.harness.probes.misbehaving_payload"
COMPARED = ("status", "details", "rows", "warnings")


@pytest.fixture(scope="module")
def installed():
    prepared = prepare_revision("installed")
    assert prepared.error is None
    yield prepared
    forkpool.close_servers(prepared.spec)


@pytest.fixture(scope="module")
def server(installed):
    """The module's warm server (started here, so that no test pays the warm-up inside its own probe's limit)."""
    warm = warm_server(installed.spec, installed.python, _child_env(installed), "cpu", limit=600,
                       revision_env=installed.env)
    assert warm.server is not None, f"{warm.reason}\n{warm.log_tail}"
    return warm


def _same_server(installed, warm) -> bool:
    again = warm_server(installed.spec, installed.python, _child_env(installed), "cpu", limit=600,
                       revision_env=installed.env)
    return again.server is warm.server and pid_alive(warm.server.pid)


def _view(result) -> dict:
    return {k: getattr(result, k) for k in COMPARED}


def test_launch_mode_forks_only_where_it_is_safe(monkeypatch):
    monkeypatch.delenv(LAUNCH_ENV, raising=False)
    assert launch_mode(None, multiprocess=False, device="cpu") == ("fork", "")
    assert launch_mode("fresh", multiprocess=False, device="cpu")[0] == "fresh"
    assert launch_mode(None, multiprocess=True, device="cpu") == ("fresh", "a multi-process test starts its own workers")
    assert launch_mode(None, multiprocess=False, device="cuda")[0] == "fresh"
    monkeypatch.setenv(LAUNCH_ENV, "fresh")
    assert launch_mode(None, multiprocess=False, device="cpu")[0] == "fresh"
    assert launch_mode("fork", multiprocess=False, device="cpu")[0] == "fork"  # the argument wins
    monkeypatch.setenv(LAUNCH_ENV, "forkserver")
    with pytest.raises(ProbeError, match=r"expected one of fork, fresh \(from --launch or \$MCORE_COMPAT_PROBE_LAUNCH\)"):
        launch_mode(None, multiprocess=False, device="cpu")


def test_the_server_forks_from_one_thread(server):
    # a thread running at fork time (torch's pool, a gloo loop) would leave its locks held in every child
    assert server.threads == 1
    assert server.seconds > 0


@pytest.mark.parametrize(("test", "details"), [
    ("crash", "crashed: signal SIGSEGV (Fatal Python error: Segmentation fault)"),
    ("exit", "exited with code 7 without a result"),
    ("raise", "RuntimeError: boom on purpose (at misbehaving_payload.py:"),
])
def test_a_crash_is_judged_as_in_a_fresh_interpreter_and_the_server_serves_on(installed, server, test, details):
    forked = run_probe(installed, test, payload=MISBEHAVING, timeout_s=120)
    fresh = run_probe(installed, test, payload=MISBEHAVING, timeout_s=120, launch="fresh")
    assert forked.meta["launch"] == "fork server" and fresh.meta["launch"].startswith("fresh interpreter")
    assert forked.status == fresh.status == "error"
    assert forked.details == fresh.details and forked.details.startswith(details)
    assert forked.meta["returncode"] == fresh.meta["returncode"] != 0
    assert _same_server(installed, server)


def test_a_hang_is_a_timeout_that_kills_its_group_and_not_the_server(installed, server, tmp_path):
    start = time.monotonic()
    result = run_probe(installed, "hang", payload=MISBEHAVING, timeout_s=5, workdir=tmp_path)
    assert time.monotonic() - start < 60
    assert result.status == "timeout" and result.meta["launch"] == "fork server"
    assert result.details == "timed out after 5s (process group killed)"
    (pid_file,) = tmp_path.glob("*/grandchild.pid")
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(grandchild), "the hanging probe's grandchild outlived the timeout"
    assert _same_server(installed, server)
    after = run_probe(installed, "state", payload=MISBEHAVING, timeout_s=120)
    assert after.status == "passed", after.details


def test_what_a_probe_leaves_behind_never_reaches_the_next_one(installed, server):
    leak = run_probe(installed, "leak", payload=MISBEHAVING, timeout_s=120)
    assert leak.status == "passed", f"{leak.details}\n{leak.log_tail}"
    first = run_probe(installed, "state", payload=MISBEHAVING, timeout_s=120)
    second = run_probe(installed, "state", payload=MISBEHAVING, timeout_s=120)
    for state in (first, second):
        assert state.meta["launch"] == "fork server"
        failed = {row: r["details"] for row, r in state.rows.items() if r["status"] != "passed"}
        assert state.status == "passed" and not failed, failed
        assert state.rows["process"]["metrics"]["parent"] == server.server.pid  # forked by the one warm server
    assert first.rows["rng"]["metrics"]["seed"] != str(LEAKED_SEED)
    # each child is seeded afresh, as each fresh interpreter is: no two probes share a random sequence
    assert first.rows["rng"]["metrics"]["seed"] != second.rows["rng"]["metrics"]["seed"]
    assert first.rows["process"]["metrics"]["pid"] != second.rows["process"]["metrics"]["pid"]


def test_one_server_runs_probes_side_by_side(installed, server):
    # --jobs N: several threads send requests; each child is reaped and answered by its own id
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda t: run_probe(installed, t, payload=MISBEHAVING, timeout_s=120),
                                ["state", "exit", "state"]))
    assert [r.status for r in results] == ["passed", "error", "passed"]
    assert results[1].details == "exited with code 7 without a result"
    assert {r.rows["process"]["metrics"]["parent"] for r in (results[0], results[2])} == {server.server.pid}
    assert _same_server(installed, server)


def test_a_forked_probe_gets_the_environment_of_its_launch(installed, server, monkeypatch):
    monkeypatch.setenv(MARK_ENV, "set after the server started")
    state = run_probe(installed, "state", payload=MISBEHAVING, timeout_s=120)
    assert state.meta["launch"] == "fork server" and state.status == "passed", state.details
    assert state.rows["process"]["metrics"]["mark"] == "set after the server started"
    assert _same_server(installed, server)


def test_a_real_probe_gives_the_same_verdict_forked_and_fresh(installed, server):
    forked = run_probe(installed, "import")
    fresh = run_probe(installed, "import", launch="fresh")
    assert forked.meta["launch"] == "fork server" and fresh.meta["launch"].startswith("fresh interpreter")
    assert forked.status == "passed", forked.details
    assert _view(forked) == _view(fresh)  # MCore's import-time warnings included, recorded once by the server
    assert any(w["filename"].startswith("megatron/") for w in forked.warnings)
    assert {k: forked.meta[k] for k in ("mcore_version", "torch", "transformers", "device", "returncode")} == \
        {k: fresh.meta[k] for k in ("mcore_version", "torch", "transformers", "device", "returncode")}


@pytest.mark.slow  # three real bodies twice (~1-2 min on the 2-core box)
@pytest.mark.parametrize("test", ["family:llama", "features", "recipes"])
def test_real_probes_give_the_same_verdict_forked_and_fresh(installed, server, test):
    forked = run_probe(installed, test)
    fresh = run_probe(installed, test, launch="fresh")
    assert forked.meta["launch"] == "fork server"
    assert forked.status == fresh.status and forked.status in ("passed", "failed")
    assert forked.details == fresh.details
    assert {r: v["status"] for r, v in forked.rows.items()} == {r: v["status"] for r, v in fresh.rows.items()}
    assert forked.warnings == fresh.warnings


def test_a_forked_probe_writes_its_files_where_a_fresh_one_does(installed, server, tmp_path):
    result = run_probe(installed, "import", workdir=tmp_path)
    (probe_dir,) = tmp_path.iterdir()
    assert sorted(p.name for p in probe_dir.iterdir()) == ["RESULT.json", "probe.log"]
    assert result.status == "passed"
    assert json.loads(Path(probe_dir, "RESULT.json").read_text())["status"] == "passed"
    assert "Traceback" not in Path(probe_dir, "probe.log").read_text()
