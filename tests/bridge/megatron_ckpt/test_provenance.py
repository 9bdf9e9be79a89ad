"""What a ``torch_dist`` checkpoint records about its HF source, and what reads it back: the HF model id
(``AutoBridge.get_hf_model_id_from_checkpoint``) and the source's tensor dtypes (a bf16 model exports in
bf16 again, norms included, though MCore keeps its norms in float32); and that the offline
``convert --format torch_dist`` process never imports megatron-core, ``torch._dynamo`` or transformers' model
code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from bridge.auto_bridge import AutoBridge
from bridge.errors import CheckpointError
from bridge.megatron_ckpt.layout import hf_dtype_of, hf_dtypes_record
from bridge.megatron_ckpt.offline import convert_to_torch_dist
from bridge.runtime import reset_model_parallel

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.usefixtures("fresh_parallel_state")


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bf16 Llama whose norms are not all ones (so a float32 round trip would show in the values too)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.helpers.tiny import TINY_LLAMA

    torch.manual_seed(5)
    model = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.add_(torch.randn_like(param) * 0.1)
    out = tmp_path_factory.mktemp("bf16") / "hf"
    model.to(torch.bfloat16).save_pretrained(out)
    return out


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(path / "model.safetensors", "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    wrong = sorted(k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k]))
    assert not wrong, [(k, a[k].dtype, b[k].dtype) for k in wrong]


@pytest.mark.parametrize("exporter", ["offline", "model"])
@pytest.mark.parametrize("writer", ["import_ckpt", "offline"])
def test_a_bf16_model_exports_bit_exactly_and_names_its_source(tmp_path: Path, bf16_checkpoint: Path,
                                                               writer: str, exporter: str) -> None:
    ckpt = tmp_path / "ckpt"
    if writer == "import_ckpt":
        AutoBridge.import_ckpt(bf16_checkpoint, ckpt, offline=False)
    else:
        convert_to_torch_dist(bf16_checkpoint, ckpt, open_bridge=AutoBridge.from_hf_pretrained, progress=False)
    record = json.loads((ckpt / "mcore_compat.json").read_text())
    assert record["hf_dtypes"] == {"default": "bfloat16", "except": {}}
    assert record["hf_source"]["hf_model_id"] == str(bf16_checkpoint.resolve())
    assert AutoBridge.get_hf_model_id_from_checkpoint(ckpt) == str(bf16_checkpoint.resolve())
    reset_model_parallel()
    back = AutoBridge.export_ckpt(ckpt, tmp_path / "back", offline=exporter == "offline")
    _assert_same(_tensors(bf16_checkpoint), _tensors(back))


def test_the_recorded_source_is_optional_and_validated(tmp_path: Path, bf16_checkpoint: Path) -> None:
    ckpt = convert_to_torch_dist(bf16_checkpoint, tmp_path / "ckpt", open_bridge=AutoBridge.from_hf_pretrained,
                                 progress=False).path
    record_file = ckpt / "mcore_compat.json"
    record = json.loads(record_file.read_text())
    del record["hf_source"]  # as a record written before hf_source existed
    record_file.write_text(json.dumps(record))
    assert AutoBridge.get_hf_model_id_from_checkpoint(ckpt) is None
    record["hf_source"] = {"hf_model_id": 7}
    record_file.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="string 'hf_model_id'"):
        AutoBridge.get_hf_model_id_from_checkpoint(ckpt)
    assert AutoBridge.get_hf_model_id_from_checkpoint(tmp_path) is None  # neither a layout nor a torch_dist record


def test_hf_dtypes_records_the_common_dtype_and_the_exceptions() -> None:
    table = hf_dtypes_record({"a": "bfloat16", "b": "bfloat16", "norm": "float32"})
    assert table == {"default": "bfloat16", "except": {"norm": "float32"}}
    record = {"hf_dtypes": table}
    assert (hf_dtype_of(record, "a"), hf_dtype_of(record, "norm"), hf_dtype_of(None, "a")) == ("bfloat16", "float32",
                                                                                               None)
    assert hf_dtype_of({}, "a") is None


_PROBE = """
import sys
from harness.cli import main
rc = main(["convert", sys.argv[1], sys.argv[2], "--format", "torch_dist", "--no-progress"])
# transformers.models.auto.modeling_auto is a table of class names that transformers' own config modules import
# (auto_docstring); model code is transformers.modeling_utils and each family's modeling_<name>
# torch._dynamo (half a second) comes with torch.cat on meta tensors: the planner computes fused shapes instead
heavy = sorted(m for m in sys.modules if m == "megatron.core" or m.startswith("megatron.core.")
               or m == "torch._dynamo" or m == "transformers.modeling_utils"
               or (m.startswith("transformers.models.") and ".modeling_" in m and ".auto." not in m))
print("RC", rc)
print("HEAVY", heavy)
"""


def test_offline_convert_imports_neither_megatron_core_nor_dynamo_nor_transformers_model_code(
        tmp_path: Path, bf16_checkpoint: Path) -> None:
    """The offline path's start-up: HF config classes are enough; MCore and model classes are for import-ckpt."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(bf16_checkpoint), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert "RC 0" in proc.stdout, proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout, proc.stdout
    assert (tmp_path / "out" / "iter_0000000" / "metadata.json").is_file()
