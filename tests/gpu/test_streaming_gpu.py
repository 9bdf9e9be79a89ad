"""On a CUDA GPU: weights reach device parameters through pinned staging slots, and device tensors reach
disk through them, byte for byte. Marked ``gpu``: deselected by default and in CI (no GPU there); run with
``pytest -m gpu tests/gpu`` on a GPU machine (results: ``matrices/gpu/``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bridge.checkpoint.writer import HFCheckpointWriter
from bridge.parallel._common import bitwise_equal
from bridge.streaming.pieces import FileSpan, Pieces
from bridge.streaming.staging import DeviceUploader, StagingSlots
from tests.helpers.tiny import make_hf_checkpoint
from tests.strategies import random_bits

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _blob(tmp: Path, shapes: list[tuple[int, int]]) -> list[tuple[FileSpan, torch.Tensor]]:
    path, out, blob = tmp / "blob", [], bytearray(b"x" * 3)
    for i, shape in enumerate(shapes):
        data = random_bits(shape, torch.bfloat16, i)
        out.append((FileSpan(path, len(blob), torch.bfloat16, shape), data))
        blob += data.view(torch.uint8).numpy().tobytes()
    path.write_bytes(bytes(blob))
    return out


@pytest.mark.parametrize("slot_bytes", [4096, 2**20])
def test_uploads_to_cuda_through_pinned_slots_are_exact(tmp_path: Path, slot_bytes: int) -> None:
    stored = _blob(tmp_path, [(1, 3), (700, 129), (64, 2048), (5, 5), (1024, 1024)])
    slots = StagingSlots(nbytes=slot_bytes, count=3)
    assert slots.pinned
    targets = []
    with DeviceUploader(slots, readers=2) as uploader:
        for span, data in stored:
            whole = torch.empty(data.shape, dtype=torch.bfloat16, device="cuda")
            cols = torch.empty(data.shape[0], data.shape[1] // 2 + 1, dtype=torch.bfloat16, device="cuda")
            lo = data.shape[1] - cols.shape[1]
            uploader.add(Pieces.rows([span]), whole)
            uploader.add(Pieces(torch.bfloat16, tuple(cols.shape), tuple(span.columns(lo, data.shape[1]))), cols)
            targets.append((whole, cols, data, lo))
    for whole, cols, data, lo in targets:
        assert bitwise_equal(whole.cpu(), data) and bitwise_equal(cols.cpu(), data[:, lo:])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_uploads_to_another_gpu_than_the_threads_current_one_are_exact(tmp_path: Path) -> None:
    """A rank's GPU under torchrun is not device 0, which is the current device of every new thread: the
    slots' reuse must wait for the transfers on the target's device (found as a corrupted TP=2 export)."""
    stored = _blob(tmp_path, [(512, 1024)] * 48)  # 48 MiB through two 64 KiB slots: constant reuse
    slots = StagingSlots(nbytes=2**16, count=2)
    with torch.cuda.device(1):
        targets = [torch.empty(d.shape, dtype=torch.bfloat16, device="cuda:1") for _, d in stored]
        # Hold GPU 1's stream for a while: every transfer queues behind this, so a slot reused before its
        # transfer ran (an event on the wrong device) is overwritten first, deterministically.
        torch.cuda._sleep(2 * 10**9)
        with DeviceUploader(slots, readers=1) as uploader:
            for (span, _), target in zip(stored, targets):
                uploader.add(Pieces.rows([span]), target)
    assert all(bitwise_equal(t.cpu(), d) for t, (_, d) in zip(targets, stored))


def test_writer_streams_cuda_tensors_through_the_slots(tmp_path: Path) -> None:
    tensors = {f"w{i}": random_bits((300 + i, 1000), torch.bfloat16, i) for i in range(6)}
    expected = {n: (t.dtype, tuple(t.shape)) for n, t in tensors.items()}
    with HFCheckpointWriter(tmp_path / "cpu", expected=expected, durable=False) as writer:
        for name, t in tensors.items():
            writer.add(name, t)
    with HFCheckpointWriter(tmp_path / "gpu", expected=expected, durable=False) as writer:
        assert writer.streaming
        for name, t in tensors.items():
            on_device = t.cuda()
            writer.add(name, on_device)
            on_device.fill_(0)  # the writer copied it already: changing it afterwards changes nothing
        assert writer.buffered_bytes == 0  # nothing held but the slots
    assert (tmp_path / "gpu" / "model.safetensors").read_bytes() == (tmp_path / "cpu" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_auto_bridge_loads_onto_the_gpu_and_exports_bit_exact(tmp_path: Path, dtype: torch.dtype) -> None:
    from bridge import AutoBridge
    from bridge.runtime import reset_model_parallel

    reset_model_parallel()
    src = make_hf_checkpoint(tmp_path / "hf", dtype=dtype)
    bridge = AutoBridge.from_hf_pretrained(src)
    provider = bridge.to_megatron_provider()
    provider.tensor_model_parallel_size = provider.pipeline_model_parallel_size = 1
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    params = dict(model[0].named_parameters())
    assert all(p.device.type == "cuda" for p in params.values())
    bridge.save_hf_pretrained(model, tmp_path / "out", durable=False)
    before, after = load_file(src / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(before) == sorted(after)
    assert all(after[n].dtype == t.dtype and torch.equal(after[n], t) for n, t in before.items())
    cpu_side = dict(bridge.export_hf_weights(model))  # on_host=True: CPU tensors
    assert all(t.device.type == "cpu" and torch.equal(t, before[n]) for n, t in cpu_side.items())
    reset_model_parallel()
