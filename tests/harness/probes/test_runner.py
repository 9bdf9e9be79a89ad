"""harness.probes.runner: judging what a probe subprocess left behind (without starting one), and the
result record. Real subprocesses (crash, hang, import failure) are in test_sweep.py and test_sweep_command.py."""

from __future__ import annotations

import json
import signal

import pytest

from harness.errors import ProbeError
from harness.probes.prepared import PreparedRevision
from harness.probes.runner import (
    STATUSES,
    ProbeResult,
    _child_env,
    _exit_reason,
    _read_result,
    _summary,
    run_probe,
)

TRACEBACK = """Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/work/main/harness/probes/payload.py", line 92, in run_test
    import megatron.core
  File "<frozen importlib._bootstrap>", line 1176, in _find_and_load
  File "/tmp/rev/megatron/core/__init__.py", line 3, in <module>
    from pkg_resources import packaging
ModuleNotFoundError: No module named 'pkg_resources'
"""


def test_exit_reasons():
    assert _exit_reason(1, TRACEBACK) == ("import failed: ModuleNotFoundError: No module named 'pkg_resources' "
                                          "(at megatron/core/__init__.py:3)")
    payload_said = "some output\npayload: megatron.core does not import: ImportError: nope (at megatron/core/x.py:1)\n"
    assert _exit_reason(3, payload_said) == "import failed: ImportError: nope (at megatron/core/x.py:1)"
    assert _exit_reason(-signal.SIGSEGV, "Fatal Python error: Segmentation fault\n") == \
        "crashed: signal SIGSEGV (Fatal Python error: Segmentation fault)"
    assert _exit_reason(-signal.SIGKILL, "") == "crashed: signal SIGKILL"
    runtime = 'Traceback (most recent call last):\n  File "/x/bridge/a.py", line 7, in f\nRuntimeError: boom\n'
    assert _exit_reason(1, runtime) == "RuntimeError: boom (at a.py:7)"
    assert _exit_reason(7, "no traceback at all\n") == "exited with code 7 without a result"


def test_read_result_checks_the_payload_file(tmp_path):
    path = tmp_path / "RESULT.json"
    with pytest.raises(ProbeError, match="no RESULT.json"):
        _read_result(path)
    path.write_text("{not json")
    with pytest.raises(ProbeError, match="unreadable"):
        _read_result(path)
    path.write_text(json.dumps({"status": "error"}))
    with pytest.raises(ProbeError, match="expected status"):
        _read_result(path)
    path.write_text(json.dumps({"status": "passed", "rows": []}))
    with pytest.raises(ProbeError, match="'rows' to be an object"):
        _read_result(path)
    good = {"status": "failed", "rows": {"llama": {"status": "failed", "details": "logits differ"},
                                         "gqa": {"status": "passed", "details": ""}}}
    path.write_text(json.dumps(good))
    assert _read_result(path) == good
    assert _summary(good) == "1 passed, 1 failed; llama: logits differ"


def test_result_record_round_trips_and_refuses_unknown_statuses():
    result = ProbeResult("pypi:0.16.1", "import", "timeout", details="timed out", duration_s=1.5,
                         meta={"device": "cpu"})
    back = ProbeResult.from_json(json.loads(json.dumps(result.to_json())), cached=True)
    assert back.cached and back.to_json() == result.to_json()
    assert set(STATUSES) == {"passed", "failed", "skipped", "error", "timeout"}
    with pytest.raises(ProbeError, match="expected a status"):
        ProbeResult("pypi:0.16.1", "import", "crashed")


def test_a_revision_that_could_not_be_prepared_is_not_run():
    prepared = PreparedRevision(spec="pypi:0.9.0", version="0.9.0", commit=None, python="/nonexistent/python",
                                pythonpath=(), env={}, method="pythonpath", prepare_s=0.1,
                                error="prepare failed: pip install ... failed")
    result = run_probe(prepared, "import")
    assert result.status == "error" and result.details == prepared.error and result.meta["device"] == "cpu"


def test_an_interpreter_that_cannot_start_is_an_error(tmp_path):
    prepared = PreparedRevision(spec="installed", version=None, commit=None, python=str(tmp_path / "python"),
                                pythonpath=(), env={}, method="venv", prepare_s=0.0, identity="tree:x")
    result = run_probe(prepared, "import", workdir=tmp_path / "work")
    assert result.status == "error" and result.details.startswith("could not start")


def test_probes_report_the_release_not_the_working_tree_commit(monkeypatch):
    # megatron.core.package_info appends `git rev-parse HEAD` of the working directory to its version
    # unless NO_VCS_VERSION=1: probes run from our checkout would report "0.19.2+<our commit>"
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    prepared = PreparedRevision(spec="pypi:0.9.0", version="0.9.0", commit=None, python="python",
                                pythonpath=("/rev",), env={"PYTHONPATH": "/rev:/project"}, method="pythonpath",
                                prepare_s=0.1)
    env = _child_env(prepared)
    assert env["NO_VCS_VERSION"] == "1" and env["PYTHONPATH"] == "/rev:/project"
