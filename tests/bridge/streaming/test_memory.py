"""Peak memory of convert/export stays well under the checkpoint's size, measured in fresh processes.

A ~390 MB fp32 Llama-shaped checkpoint is converted (TP=1, the largest groups) and exported in one
fresh process (imports done first); each run's peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``) minus its RSS before the work must stay under 25% of the checkpoint. The same measurement of a plain full load in
another process (every tensor in memory, then saved) must see more than the checkpoint's size, or
the measurement itself is broken.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from bridge.parallel._safetensors import StreamingWriter

ROOT = Path(__file__).resolve().parents[3]
CONFIG = dict(vocab_size=4000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
              num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=256)

MEASURE = r"""
import sys
src, out = sys.argv[2:4]

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

def measure(run):
    base = rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    run()
    print(rss("VmHWM") - base)

if sys.argv[1] == "ours":
    from bridge.streaming import convert_checkpoint, export_checkpoint
    from bridge.streaming.convert import family_for

    family_for(src, None)  # imports and config parsing happen before the measurement
    measure(lambda: convert_checkpoint(src, out + "/m", progress=False, durable=False))
    measure(lambda: export_checkpoint(out + "/m", out + "/back", progress=False, durable=False))
else:  # a plain full load: every tensor in memory, then saved
    from safetensors.torch import load_file, save_file

    measure(lambda: save_file({n: t.clone() for n, t in load_file(src + "/model.safetensors").items()},
                              out + "/naive.safetensors"))
"""


def _write_checkpoint(path: Path) -> int:
    """A Llama checkpoint with every tensor filled (streamed to disk, one tensor in memory at a time)."""
    from transformers import LlamaConfig

    path.mkdir()
    LlamaConfig(**CONFIG, architectures=["LlamaForCausalLM"]).save_pretrained(path)
    c = CONFIG
    h, f = c["hidden_size"], c["intermediate_size"]
    kv = c["num_key_value_heads"] * h // c["num_attention_heads"]
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], h), "model.norm.weight": (h,),
              "lm_head.weight": (c["vocab_size"], h)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                   p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                   p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                   p + "mlp.down_proj.weight": (h, f), p + "input_layernorm.weight": (h,),
                   p + "post_attention_layernorm.weight": (h,)}
    entries = [(n, torch.float32, s) for n, s in sorted(shapes.items())]
    with StreamingWriter(path / "model.safetensors", entries, {"format": "pt"}) as writer:
        for i, (name, dtype, shape) in enumerate(entries):
            writer.write(name, torch.full(shape, float(i + 1), dtype=dtype))
    return sum(torch.Size(s).numel() * 4 for _, _, s in entries)


def _measure(mode: str, src: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", MEASURE, mode, str(src), str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _peaks(proc: subprocess.Popen) -> list[int]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return [int(line) for line in out.split() if line.lstrip("-").isdigit()]


def test_convert_and_export_peak_memory_is_a_fraction_of_the_checkpoint(tmp_path: Path) -> None:
    size = _write_checkpoint(tmp_path / "hf")
    assert size > 300e6
    ours, plain = _measure("ours", tmp_path / "hf", tmp_path), _measure("naive", tmp_path / "hf", tmp_path)
    (convert_peak, export_peak), (naive_peak,) = _peaks(ours), _peaks(plain)
    report = {"checkpoint": size, "convert": convert_peak, "export": export_peak, "naive": naive_peak}
    print(json.dumps(report))
    assert naive_peak > size, report  # the measurement sees a full load
    assert convert_peak < 0.25 * size, report
    assert export_peak < 0.25 * size, report
    assert (tmp_path / "back" / "model.safetensors").stat().st_size == (tmp_path / "hf" / "model.safetensors").stat().st_size
