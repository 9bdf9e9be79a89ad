"""Our own calls trigger no library deprecation warning (issue 14): load, build, forward and export a model, and the
offline ``mcore-compat convert`` / ``export``, with DeprecationWarning and FutureWarning turned into errors and
transformers' logged deprecations ("`torch_dtype` is deprecated! Use `dtype` instead!") collected.

Runs in a fresh interpreter, so that no earlier test has already imported a module or used up a warn-once.
Filtered by module, because they are MCore's and not ours: warnings attributed to ``megatron.*`` (MCore calling
deprecated torch APIs) and to ``torch.jit.*`` (MCore's ``@torch.jit.script`` functions, compiled when MCore's
modules are imported). Everything else, from transformers, safetensors, torch or the standard library, fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers.tiny import make_hf_checkpoint

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, warnings
    from pathlib import Path

    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("error", category=category)
        warnings.filterwarnings("ignore", category=category, module=r"megatron\\.")  # MCore's own calls
        warnings.filterwarnings("ignore", category=category, module=r"torch\\.jit\\.")  # MCore's jit-scripted code

    logged = []

    class Collect(logging.Handler):
        def emit(self, record):
            logged.append(f"{record.name}: {record.getMessage()}")

    for name in ("transformers", "huggingface_hub", "torch"):
        logging.getLogger(name).addHandler(Collect(level=logging.WARNING))

    import torch
    from bridge.auto_bridge import AutoBridge
    from bridge.inference import forward_logits
    from harness.cli import main

    hf, out, others = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    bridge = AutoBridge.from_hf_pretrained(hf)
    provider = bridge.to_megatron_provider(load_weights=True)
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    logits = forward_logits(model, torch.zeros(1, 4, dtype=torch.long))
    bridge.save_hf_pretrained(model, out / "saved")
    codes = [main(["convert", str(hf), str(out / "mcore"), "--tp", "2", "--no-progress"]),
             main(["export", str(out / "mcore"), str(out / "exported"), "--no-progress"])]
    dtypes = [str(AutoBridge.from_hf_pretrained(o).to_megatron_provider(load_weights=False).params_dtype)
              for o in others]  # config.json variants: the old torch_dtype key, no dtype at all
    print(json.dumps({"width": logits.shape[-1], "codes": codes, "dtypes": dtypes, "logged": logged}))
    """
)


def _config_variant(path: Path, **edit: object) -> Path:
    hf = make_hf_checkpoint(path)
    cfg = hf / "config.json"
    data = {k: v for k, v in json.loads(cfg.read_text()).items() if k not in ("dtype", "torch_dtype")}
    cfg.write_text(json.dumps({**data, **edit}))
    return hf


def test_load_build_export_convert_and_export_raise_no_deprecation_warning(tmp_path: Path) -> None:
    hf = make_hf_checkpoint(tmp_path / "hf")  # config.json holds "dtype" (transformers 5) like current checkpoints
    old = _config_variant(tmp_path / "old", torch_dtype="bfloat16")  # as saved by transformers before 4.56
    none = _config_variant(tmp_path / "none")  # no dtype: the provider reads the config's (unset) dtype
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(hf), str(tmp_path), str(old), str(none)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["width"] == 96 and result["codes"] == [0, 0]
    assert result["dtypes"] == ["torch.bfloat16", "torch.float32"]
    assert [m for m in result["logged"] if "deprecat" in m.lower()] == [], result["logged"]
