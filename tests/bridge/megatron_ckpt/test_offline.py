"""``convert --format torch_dist``: the offline checkpoint (no model built) and the model-built one
(``import_ckpt``) hold the same keys and global shapes and load to identical tensors; Megatron-LM's layout,
MoE refused clearly, peak memory about one parameter group."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bridge.auto_bridge import AutoBridge
from bridge.errors import UnsupportedFeatureError
from bridge.megatron_ckpt.api import load_checkpoint_model
from bridge.megatron_ckpt.offline import convert_to_torch_dist, sharded_key
from bridge.runtime import reset_model_parallel
from harness.cli import main

import_ckpt, export_ckpt = AutoBridge.import_ckpt, AutoBridge.export_ckpt

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.usefixtures("fresh_parallel_state")


def _index(path: Path) -> dict[str, tuple]:
    from torch.distributed.checkpoint import FileSystemReader

    meta = FileSystemReader(str(path / "iter_0000000")).read_metadata().state_dict_metadata
    return {k: tuple(getattr(v, "size", ())) for k, v in meta.items()}


def _loaded(path: Path) -> dict[str, torch.Tensor]:
    reset_model_parallel()
    state = load_checkpoint_model(path, open_bridge=AutoBridge.from_hf_pretrained).model[0].state_dict()
    reset_model_parallel()
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_offline_and_model_built_checkpoints_load_to_identical_tensors(tmp_path: Path, tied: bool) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=12, tie_word_embeddings=tied)
    offline = convert_to_torch_dist(hf, tmp_path / "offline", open_bridge=AutoBridge.from_hf_pretrained,
                                    progress=False).path
    reset_model_parallel()
    built = import_ckpt(hf, tmp_path / "built", offline=False)
    assert _index(offline) == _index(built)  # same keys (extra states included) and global shapes
    a, b = _loaded(offline), _loaded(built)
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((offline / "mcore_compat.json").read_text())
    assert record["params"] == json.loads((built / "mcore_compat.json").read_text())["params"]
    back = export_ckpt(offline, tmp_path / "back")
    assert (back / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes()


def test_sharded_keys_follow_mcores_local_spec() -> None:
    assert sharded_key("decoder.layers.0.pre_mlp_layernorm.weight") == ("decoder.layers.mlp.linear_fc1.layer_norm_weight", 0)
    assert sharded_key("decoder.layers.12.self_attention.q_layernorm.weight") == \
        ("decoder.layers.self_attention.q_layernorm.weight", 12)
    assert sharded_key("embedding.word_embeddings.weight") == ("embedding.word_embeddings.weight", None)


def test_mixture_of_experts_is_refused_with_the_alternative(tmp_path: Path) -> None:
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    from tests.bridge.models.test_qwen3_moe import TINY

    Qwen3MoeForCausalLM(Qwen3MoeConfig(**TINY)).save_pretrained(tmp_path / "moe")
    with pytest.raises(UnsupportedFeatureError, match="use `mcore-compat import-ckpt`"):
        convert_to_torch_dist(tmp_path / "moe", tmp_path / "out", open_bridge=AutoBridge.from_hf_pretrained,
                              progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moe"]


def test_cli_convert_format_torch_dist(tmp_path: Path, capsys) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=13)
    assert main(["convert", str(hf), str(tmp_path / "td"), "--format", "torch_dist", "--no-progress"]) == 0
    assert "torch_dist" in capsys.readouterr().out
    assert main(["convert", str(hf), str(tmp_path / "x"), "--format", "torch_dist", "--tp", "2"]) == 2
    assert "loads at any TP x PP" in capsys.readouterr().err
    assert main(["export-ckpt", str(tmp_path / "td"), str(tmp_path / "back"), "--no-progress"]) == 0
    assert (tmp_path / "back" / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes()


MEASURE = r"""
import sys
src, out = sys.argv[1:3]

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

from bridge.auto_bridge import AutoBridge
from bridge.megatron_ckpt.offline import convert_to_torch_dist
from bridge.streaming.convert import family_for

family_for(src, None)  # imports and config parsing before the measurement
base = rss("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
convert_to_torch_dist(src, out, open_bridge=AutoBridge.from_hf_pretrained, progress=False, durable=False)
print(rss("VmHWM") - base)
"""


@pytest.mark.slow
def test_peak_memory_is_about_one_parameter_group(tmp_path: Path) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=0, vocab_size=4000, hidden_size=1024, intermediate_size=2816,
                            num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=4,
                            initializer_range=0.02)
    size = (hf / "model.safetensors").stat().st_size
    group = 2 * 2816 * 1024 * 4  # the largest group: gate + up of one layer, fp32
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(hf), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = int(proc.stdout.strip().splitlines()[-1])
    assert peak < max(4 * group, size // 4), (peak, size, group)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.int8], ids=str)
def test_a_record_copied_from_file_spans_loads_as_torch_save_of_the_tensor(tmp_path: Path, dtype) -> None:
    """The fast writer (``torch.save`` metadata with ``skip_data``, the bytes copied in from the HF files) gives
    records that ``torch.load`` reads as the tensor itself, for spans, in-memory parts and an empty tensor."""
    from bridge.megatron_ckpt.offline import _append, _append_pieces, _Index
    from bridge.streaming.pieces import FileSpan, Pieces

    data = (torch.arange(6 * 5 * 4) % 97).to(dtype).reshape(6, 5, 4)
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3 + data.view(torch.uint8).numpy().tobytes())  # an odd offset, as in safetensors
    whole = FileSpan(source, 3, dtype, (6, 5, 4))
    tail = torch.full((2, 5, 4), 7).to(dtype)
    cases = [(Pieces(dtype, (6, 5, 4), (whole,)), data),
             (Pieces.rows([whole.rows(4, 6), whole.rows(0, 2), tail]), torch.cat([data[4:], data[:2], tail])),
             (Pieces(dtype, (0, 5, 4), ()), data[:0])]
    index, fast = _Index(), tmp_path / "fast.distcp"
    with open(fast, "w+b") as handle:
        handle.write(b"head")
        spans = []
        for i, (pieces, _) in enumerate(cases):
            start = handle.tell()
            _append_pieces(handle, index, f"t{i}", (0, 0, 0, 0), (1, *pieces.shape), pieces)
            spans.append((start, handle.tell()))
    raw = fast.read_bytes()
    for (start, end), (_, want) in zip(spans, cases, strict=True):
        got = torch.load(io.BytesIO(raw[start:end]), weights_only=True)
        assert got.dtype == dtype and torch.equal(got, want.unsqueeze(0))
    reference = io.BytesIO()
    _append(reference, _Index(), "t", (0, 0, 0, 0), data.unsqueeze(0))
    assert len(reference.getvalue()) == spans[0][1] - spans[0][0]  # the same layout as torch.save's own record


def test_an_unexpected_torch_save_record_is_refused_not_asserted(tmp_path: Path) -> None:
    """The offline writer copies bytes into torch.save's own record; a record laid out otherwise (here: a size
    that does not match) is a CheckpointError naming both sizes, also under ``python -O``."""
    from bridge.errors import CheckpointError
    from bridge.megatron_ckpt.records import record_data_offset

    path = tmp_path / "record.pt"
    torch.save(torch.arange(6, dtype=torch.float32), path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        at = record_data_offset(handle.fileno(), 0, size, nbytes=24)  # the real size: the record's data offset
        assert torch.equal(torch.frombuffer(bytearray(path.read_bytes()[at:at + 24]), dtype=torch.float32),
                           torch.arange(6, dtype=torch.float32))
        with pytest.raises(CheckpointError, match=r"data/0 entry of 25 bytes; found \[\('record/data/0', 24\)\]"):
            record_data_offset(handle.fileno(), 0, size, nbytes=25)
