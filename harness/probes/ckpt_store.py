"""Checkpoints written once per (writer release, family) for the ``ckpt_compat`` probes, cached like probe results.

:func:`ensure_written` prepares the writer release (:func:`harness.probes.envs.prepare_revision`) and runs
``python -m harness.probes.payload_ckpt write <family>[,<family>...] --out DIR`` under it, which writes, per
family, its tiny HF checkpoint (``DIR/<family>/hf``), imports it with the bridge's ``torch_dist`` writer
(``mc/``) and says how it went in ``writer.json``: several families in one process when the reader asks
for a batch (an interpreter start with MCore imported costs more than writing a tiny checkpoint). The entry lives in ``<cache>/ckpt_compat/<key>/``, ``key`` being the probe cache key
(:func:`harness.probes.cachekeys.probe_key`) of the writer revision and the test ``ckpt_write:<family>``:
the revision's identity, the project's source digest, Python / torch / transformers. It is built in a
temporary directory and renamed into place under a file lock, so concurrent readers wait for one writer
and a half-written entry is never used.

A writer that cannot build the family (the bridge refuses, release-aware) is recorded as ``refused``: its
cells are ``not_run``, never failures. A crashed or hung writer is recorded as ``error``. Both are cached
like any probe result (a change to the bridge or the probes changes the key, so it is written again).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cache import default_cache_dir, file_lock
from harness.errors import ProbeError

__all__ = ["WRITER_FILE", "WRITER_STATUSES", "Written", "ensure_written", "read_writer_file"]

log = logging.getLogger("harness.probes.ckpt_store")

WRITER_FILE = "writer.json"
WRITER_STATUSES = ("written", "refused", "error")
_WRITE_TIMEOUT_S = 900.0
_TAIL_CHARS = 1500


@dataclass(frozen=True)
class Written:
    """One cached writer entry: ``status`` in :data:`WRITER_STATUSES`, the reason when not written."""

    family: str
    writer: str
    status: str
    directory: Path
    reason: str = ""
    mcore_version: str = ""

    @property
    def hf_dir(self) -> Path:
        return self.directory / "hf"

    @property
    def checkpoint(self) -> Path:
        return self.directory / "mc"


def read_writer_file(directory: Path) -> dict[str, Any]:
    """The checked ``writer.json`` of an entry (ProbeError naming the file otherwise)."""
    path = directory / WRITER_FILE
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ProbeError(f"{path}: unreadable writer record ({exc}); delete {directory} to write it again") from exc
    if not isinstance(data, dict) or data.get("status") not in WRITER_STATUSES:
        raise ProbeError(f"{path}: expected a status in {WRITER_STATUSES}, found {data!r:.120}")
    return data


def _writer_env(prepared: Any, cache_dir: Path) -> dict[str, str]:
    """The writer's environment: the runner's, with every extra directory the writer release needs.

    :func:`~harness.probes.envs.prepare_revision` leaves out an extra whose module the running interpreter
    already imports; inside a reader's probe that module comes from the READER's own extras (0.19's triton,
    0.8's ``pkg_resources``), which the writer's ``PYTHONPATH`` would then lack."""
    from harness.probes.prepared import EXTRA_REQUIREMENTS
    from harness.probes.runner import _child_env

    env = _child_env(prepared)
    paths = env.get("PYTHONPATH", "").split(os.pathsep)
    extras = [str(cache_dir / "envs" / f"extra-{extra.slug}") for extra in EXTRA_REQUIREMENTS
              if extra.applies_to(prepared.version) and (cache_dir / "envs" / f"extra-{extra.slug}" / ".complete").exists()]
    missing = [p for p in extras if p not in paths]
    env["PYTHONPATH"] = os.pathsep.join([*paths[:-1], *missing, paths[-1]] if paths and paths[-1] else [*paths, *missing])
    return env


def _run_writer(prepared: Any, families: Sequence[str], out: Path, cache_dir: Path) -> None:
    """Run the writer payload under ``prepared``: ``out/<family>/`` for each family. A crash or hang leaves an
    ``error`` record for every family it did not finish."""
    cmd = [prepared.python, "-m", "harness.probes.payload_ckpt", "write", ",".join(families), "--out", str(out)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=_writer_env(prepared, cache_dir), cwd=out, capture_output=True, text=True,
                              timeout=_WRITE_TIMEOUT_S * len(families), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        reason, code = f"the writer timed out after {_WRITE_TIMEOUT_S * len(families):g}s", None
    else:
        from harness.probes.runner import exception_reason

        code = proc.returncode
        log_text = proc.stdout + proc.stderr
        reason = exception_reason(log_text) or log_text[-_TAIL_CHARS:]
    for family in families:
        if (out / family / WRITER_FILE).is_file():
            continue
        (out / family).mkdir(parents=True, exist_ok=True)
        record = {"status": "error", "family": family, "writer": prepared.version, "reason":
                  f"writer exited {code}: {reason.strip()}", "duration_s": round(time.perf_counter() - started, 3)}
        (out / family / WRITER_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _adopt(source: Path, tmp: Path) -> None:
    for child in source.iterdir():
        shutil.move(str(child), str(tmp / child.name))


def ensure_written(family: str, writer: str, *, cache_dir: Path | None = None, batch: Sequence[str] = ()) -> Written:
    """The cached checkpoint of ``family`` written under megatron-core ``writer`` (written now if absent).

    ``batch``: other families to write in the same writer process when this one must be written (one
    interpreter start, with MCore, torch and transformers imported once, instead of one per family)."""
    from harness.probes.cachekeys import environment_id, probe_key
    from harness.probes.envs import _build_once, prepare_revision

    cache_dir = cache_dir or default_cache_dir()
    prepared = prepare_revision(f"pypi:{writer}", cache_dir=cache_dir)
    if prepared.error:
        return Written(family, writer, "error", cache_dir, reason=f"writer release {writer}: {prepared.error}")
    environment = environment_id(prepared.method, prepared.python_version)

    def entry(name: str) -> Path:
        key = probe_key(prepared.identity, f"ckpt_write:{name}", "cpu", environment=environment)
        return cache_dir / "ckpt_compat" / f"{writer}-{name}-{key[:16]}"

    directory = entry(family)
    root = cache_dir / "ckpt_compat"
    with file_lock(cache_dir / "locks" / f"ckpt-batch-{writer}-{environment}.lock"):  # one writer per release
        todo = [f for f in dict.fromkeys([family, *batch]) if not (entry(f) / ".complete").exists()]
        if todo and todo[0] == family:  # the batch rides along only when this family must be written anyway
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=root, prefix=f".batch-{writer}-"))
            try:
                _run_writer(prepared, todo, staging, cache_dir)
                for name in todo:
                    _build_once(entry(name), cache_dir / "locks" / f"ckpt-{entry(name).name}.lock",
                                lambda tmp, name=name: _adopt(staging / name, tmp))
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            log.info("%s: wrote %d famil%s under %s", writer, len(todo), "y" if len(todo) == 1 else "ies", writer)
    data = read_writer_file(directory)
    return Written(family, writer, data["status"], directory, reason=str(data.get("reason", "")),
                   mcore_version=str(data.get("mcore_version", "")))
