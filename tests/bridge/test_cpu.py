"""The CPU patches: idempotent and recorded; the masks they install equal MCore's own formulas
(run on CPU from MCore's source text); ``cpu_device_mode`` redirects ``cuda`` only inside."""

from __future__ import annotations

import ast
import functools
import inspect
from typing import Any, Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import cpu

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU patches apply only without CUDA")

_SETTINGS = settings(max_examples=80, deadline=None)


def lengths(*, max_len: int = 12) -> st.SearchStrategy[int]:
    return st.integers(1, max_len)


def windows(*, max_side: int = 12) -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(0, max_side), st.integers(0, max_side))


class _CudaToCpu(ast.NodeTransformer):
    """Rewrites ``device="cuda"`` keyword arguments to ``device="cpu"`` and drops decorators."""

    def visit_keyword(self, node: ast.keyword) -> ast.keyword:
        if node.arg == "device" and isinstance(node.value, ast.Constant) and node.value.value == "cuda":
            node.value = ast.Constant("cpu")
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.decorator_list = []
        self.generic_visit(node)
        return node


@functools.lru_cache(maxsize=None)
def mcore_original(name: str) -> Callable[..., Any]:
    """MCore's own ``megatron.core.transformer.utils.<name>``, compiled from its source with CPU devices."""
    import megatron.core.transformer.utils as utils

    tree = ast.parse(inspect.getsource(utils))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    module = ast.fix_missing_locations(ast.Module(body=[_CudaToCpu().visit(fn)], type_ignores=[]))
    namespace: dict[str, Any] = {"torch": torch}
    exec(compile(module, f"<mcore {name}>", "exec"), namespace)
    return namespace[name]


@pytest.fixture(scope="module")
def applied() -> list[str]:
    cpu.apply()
    return list(cpu.APPLIED)


# -- apply ---------------------------------------------------------------------------------------

def test_needs_cpu_patches_without_cuda():
    assert cpu.needs_cpu_patches() is True


def test_apply_is_idempotent_and_recorded(applied):
    assert {"current_device", "synchronize", "rng_tracker", "masks"} <= set(applied)
    cpu.apply()
    cpu.apply()
    assert cpu.APPLIED == applied and len(set(cpu.APPLIED)) == len(cpu.APPLIED)
    assert torch.cuda.current_device() == torch.device("cpu")
    torch.cuda.synchronize()  # a no-op, not "Torch not compiled with CUDA enabled"


def test_apply_seeds_torch_and_installs_a_working_rng_tracker(applied):
    from megatron.core import tensor_parallel

    cpu.apply(seed=77)
    got = torch.rand(3)
    torch.manual_seed(77)
    assert torch.equal(got, torch.rand(3))
    tracker = tensor_parallel.get_cuda_rng_tracker()
    tracker.add("some-stream", 5)
    with tracker.fork():
        torch.rand(1)


def test_masks_are_installed_where_mcore_looks_them_up(applied):
    import megatron.core.fusions.fused_softmax as fused_softmax
    import megatron.core.transformer.utils as utils

    calls = {"get_default_causal_mask": (4,), "get_sliding_window_causal_mask": (4, 4, (2, 0))}
    holders = {name: [m for m in (utils, fused_softmax) if getattr(m, name, None) is not None] for name in calls}
    # every mask function is somewhere (else MCore moved it and bridge.cpu no longer patches it), and
    # wherever MCore looks one up, it builds on the CPU
    assert all(holders.values()), {name: [m.__name__ for m in ms] for name, ms in holders.items()}
    for name, modules in holders.items():
        for module in modules:
            assert getattr(module, name)(*calls[name]).device.type == "cpu", f"{module.__name__}.{name}"


# -- the masks equal MCore's formulas ------------------------------------------------------------

@_SETTINGS
@given(sq=lengths())
def test_causal_mask_equals_mcore_formula(applied, sq):
    import megatron.core.transformer.utils as utils

    want = mcore_original("get_default_causal_mask")(sq)
    assert want.dtype == torch.bool
    for got in (cpu._causal_mask(sq), utils.get_default_causal_mask(sq)):
        assert got.dtype == torch.bool and torch.equal(got, want)


@_SETTINGS
@given(sq=lengths(), skv=lengths(), window=windows())
def test_sliding_window_mask_equals_mcore_formula(applied, sq, skv, window):
    import megatron.core.transformer.utils as utils

    if not hasattr(utils, "get_sliding_window_causal_mask"):
        pytest.skip("this megatron-core has no sliding-window mask")
    want = mcore_original("get_sliding_window_causal_mask")(sq, skv, window)
    for got in (cpu._sliding_window_mask(sq, skv, window), utils.get_sliding_window_causal_mask(sq, skv, window)):
        assert got.dtype == torch.bool and torch.equal(got, want)


@_SETTINGS
@given(sq=lengths(), skv=lengths(), window=windows())
def test_masks_mean_what_they_say(sq, skv, window):
    """True = masked. Query i (aligned to the end of the keys) sees keys up to i + skv - sq, and with a
    window (left, right) only keys in [i + skv - sq - left, i + skv - sq + right]."""
    causal = cpu._causal_mask(sq, skv).tolist()
    sliding = cpu._sliding_window_mask(sq, skv, window).tolist()
    for i in range(sq):
        pos = i + skv - sq
        for j in range(skv):
            assert causal[i][j] is (j > pos)
            assert sliding[i][j] is not (pos - window[0] <= j <= pos + window[1])


# -- cpu_device_mode -----------------------------------------------------------------------------

def test_cpu_device_mode_redirects_cuda_only_inside():
    with pytest.raises((RuntimeError, AssertionError)):
        torch.zeros(1, device="cuda")
    with cpu.cpu_device_mode():
        made = [
            torch.zeros(1, device="cuda"),
            torch.ones(2, device=torch.device("cuda", 0)),
            torch.empty(3, device="cuda:0"),
            torch.tensor([1.0, 2.0], device="cuda"),
            torch.arange(4, device="cuda"),
            torch.zeros(1, device="cpu"),
            torch.zeros(1),
        ]
        assert all(t.device.type == "cpu" for t in made)
        assert torch.equal(made[3], torch.tensor([1.0, 2.0]))
    with pytest.raises((RuntimeError, AssertionError)):
        torch.zeros(1, device="cuda")


def test_cpu_device_mode_ends_when_the_block_raises():
    with pytest.raises(KeyError):
        with cpu.cpu_device_mode():
            raise KeyError("boom")
    with pytest.raises((RuntimeError, AssertionError)):
        torch.zeros(1, device="cuda")


def test_missing_transformer_engine_is_patched_on_gpu_machines_too(monkeypatch):
    """Patches 7-8 concern Transformer Engine, not CUDA: a GPU machine without TE needs them as well."""
    from megatron.core.transformer import multi_latent_attention as mla

    monkeypatch.setattr(cpu, "APPLIED", [])
    monkeypatch.setattr(cpu, "needs_cpu_patches", lambda: False)  # as on a machine with CUDA
    monkeypatch.setattr(mla, "HAVE_TE", True)  # what 0.16.1 sets with TE mocked
    cpu.apply()
    assert cpu.APPLIED == ["no_transformer_engine"] and mla.HAVE_TE is False
