"""torch_dist checkpoints with ``model_class="hybrid"`` (issue 16), under the releases that have HybridModel, in a
subprocess with the release first on ``PYTHONPATH`` (the default venv's 0.16.1 predates it).

Per family (``tests/helpers/hybrid_ckpt_runs.py``): a Hybrid-layout checkpoint written by ``import_ckpt`` loads
(the writer's class) with HF's logits and exports bit-exactly; a GPT-layout checkpoint reads into a HybridModel
(``model_class="hybrid"``) the same way; a Hybrid checkpoint is refused by a GPTModel with the way out; and
``mcore-compat import-ckpt --model-class hybrid`` / ``export-ckpt`` round-trip. Llama's GPT checkpoint stores
stacked layers (MCore's ``gpt_checkpoint_interop``, 0.19+), DeepSeek-V3's per-layer ones (dense first block:
the bridge's own name map, any release with HybridModel). On 0.18.2 the stacked case is refused by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.parity import PARITY_ATOL

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.network


def _report(release: str, families: tuple[str, ...], tmp: Path) -> dict:
    from harness.probes.envs import prepare_revision

    prepared = prepare_revision(f"pypi:{release}")
    assert not prepared.error and prepared.pythonpath, f"megatron-core {release} could not be prepared: {prepared.error}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([*prepared.pythonpath, str(ROOT)])}
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "report.json"
    proc = subprocess.run([sys.executable, "-m", "tests.helpers.hybrid_ckpt_runs", "--families", ",".join(families),
                           "--out", str(out), "--cli"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["mcore_version"] == release
    return report


def _passes(result: dict) -> None:
    assert result.get("model_class") == "HybridModel", result
    assert result["max_abs_diff"] <= PARITY_ATOL, result
    assert result["export_bit_exact"], result["export_mismatches"]


def _check(report: dict, *, stacked_gpt_into_hybrid: bool) -> None:
    for row in report["rows"]:
        hybrid, gpt = row["hybrid_checkpoint"], row["gpt_checkpoint"]
        blocks = gpt["args_num_layers"]
        assert hybrid["record_model_class"] == "hybrid" and gpt["record_model_class"] == "gpt", row
        # Megatron-LM's args: a hybrid run records its pattern (pipe-free) and counts its layers
        assert hybrid["hybrid_layer_pattern"].count("*") == blocks and hybrid["args_num_layers"] == 2 * blocks, row
        assert gpt["hybrid_layer_pattern"] is None and not hybrid["stacked_layers"], row
        _passes(row["hybrid"])
        if gpt["stacked_layers"] and not stacked_gpt_into_hybrid:
            assert "needs MCore's gpt_checkpoint_interop" in row["gpt_into_hybrid"]["refused"], row
        else:
            _passes(row["gpt_into_hybrid"])
        assert "not the reverse" in row["hybrid_into_gpt"]["refused"], row
    assert report["cli"] == {"rc": [0, 0], "record_model_class": "hybrid", "export_bit_exact": True}


def test_both_layouts_on_0_19(tmp_path: Path) -> None:
    report = _report("0.19.2", ("llama", "deepseek_v3"), tmp_path)
    assert [r["gpt_checkpoint"]["stacked_layers"] for r in report["rows"]] == [True, False]  # both retarget paths
    _check(report, stacked_gpt_into_hybrid=True)


@pytest.mark.slow
def test_both_layouts_on_0_18_and_more_families_on_0_19(tmp_path: Path) -> None:
    _check(_report("0.18.2", ("llama", "deepseek_v3", "qwen3_moe"), tmp_path / "018"), stacked_gpt_into_hybrid=False)
    _check(_report("0.19.2", ("qwen3_moe", "ernie4_5_moe", "gemma3", "kimi_k2"), tmp_path / "019"),
           stacked_gpt_into_hybrid=True)


def _torchrun(env: dict[str, str], nproc: int, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
                           "--master-addr=127.0.0.1", f"--master-port={_free_port()}",
                           str(ROOT / "scripts" / "megatron_ckpt_parity.py"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(("written", "save", "load"), [("hybrid", (2, 1), (1, 2)), ("gpt", (1, 1), (2, 2))],
                         ids=["hybrid-tp2-to-pp2", "gpt-tp1-to-hybrid-tp2xpp2"])
def test_resharded_on_load_into_hybrid_model_0_19(written: str, save: tuple[int, int], load: tuple[int, int],
                                                  tmp_path: Path) -> None:
    """A Hybrid checkpoint written at TP=2 loads at PP=2, and a GPT one written at TP=1 loads into a HybridModel at
    TP=2 x PP=2 (gloo), with HF's logits: dist_checkpointing reshards either layout on load."""
    from harness.probes.envs import prepare_revision
    from tests.helpers.tiny import make_hf_checkpoint

    prepared = prepare_revision("pypi:0.19.2")
    assert not prepared.error, prepared.error
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([*prepared.pythonpath, str(ROOT)])}
    hf = make_hf_checkpoint(tmp_path / "hf", seed=5)
    _torchrun(env, save[0] * save[1], "--hf", str(hf), "--tp", str(save[0]), "--pp", str(save[1]), "--save",
              str(tmp_path / "mc"), "--report", str(tmp_path / "save.json"), "--model-class", written)
    _torchrun(env, load[0] * load[1], "--hf", str(hf), "--tp", str(load[0]), "--pp", str(load[1]), "--load",
              str(tmp_path / "mc"), "--report", str(tmp_path / "load.json"), "--model-class", "hybrid")
    report = json.loads((tmp_path / "load.json").read_text())
    assert json.loads((tmp_path / "mc" / "mcore_compat.json").read_text())["model_class"] == written
    assert report["model_class"] == "HybridModel" and report["world_size"] == load[0] * load[1], report
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] <= PARITY_ATOL, report
