"""Shared fixtures of the bridge tests: tiny HF checkpoints, clean model-parallel state, and a
sandbox for test-only bridge registrations (the registry is process-global)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.tiny import make_hf_checkpoint


@pytest.fixture(scope="session")
def tiny_llama_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GQA Llama (vocab 96, hidden 64, 4 heads, 2 KV heads), untied, fp32."""
    return make_hf_checkpoint(tmp_path_factory.mktemp("tiny-llama"), seed=0)


@pytest.fixture(scope="session")
def tiny_llama_tied_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny Llama with ``tie_word_embeddings=True`` (no ``lm_head.weight`` on disk)."""
    return make_hf_checkpoint(tmp_path_factory.mktemp("tiny-llama-tied"), seed=1, tie_word_embeddings=True)


@pytest.fixture
def fresh_parallel_state() -> Iterator[None]:
    """No MCore model-parallel groups before or after the test (the process group itself stays)."""
    from bridge.runtime import reset_model_parallel

    reset_model_parallel()
    yield
    reset_model_parallel()


@pytest.fixture
def registry_sandbox() -> Iterator[dict]:
    """The global ``bridge.registry._BY_ARCH``; architectures a test registers are removed afterwards.

    Families are loaded first, so that no real family registered during the test is removed.
    """
    from bridge import registry

    registry.registered_architectures()
    before = dict(registry._BY_ARCH)
    yield registry._BY_ARCH
    for arch in set(registry._BY_ARCH) - set(before):
        del registry._BY_ARCH[arch]
    for arch, cls in before.items():
        registry._BY_ARCH[arch] = cls
