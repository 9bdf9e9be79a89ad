"""Fixtures of the probe tests: broken megatron-core revisions as real ``path:`` directories.

Each is a directory holding only ``megatron/core/__init__.py``, which misbehaves when the probe
payload imports it: raises ImportError, crashes with SIGSEGV, has a syntax error, or hangs (after
starting a grandchild process that a timeout must kill too; its pid is written next to it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

BROKEN = {
    "importerr": 'raise ImportError("broken on purpose")\n',
    "segv": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    "abort": "import os\nos.abort()\n",
    "syntax": "def broken(:\n",
    "hang": (
        "import pathlib, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "pathlib.Path(__file__).with_name('grandchild.pid').write_text(str(child.pid))\n"
        "while True:\n"
        "    time.sleep(60)\n"
    ),
}


def make_revision(root: Path, source: str) -> Path:
    core = root / "megatron" / "core"
    core.mkdir(parents=True)
    (core / "__init__.py").write_text(source)
    return root


@pytest.fixture
def broken_revisions(tmp_path: Path) -> dict[str, Path]:
    """Fresh broken revisions per test (the hang one records a pid, so no sharing)."""
    return {name: make_revision(tmp_path / "revs" / name, source) for name, source in BROKEN.items()}


def pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
