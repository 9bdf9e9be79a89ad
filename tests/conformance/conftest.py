"""Session-wide built cases of the conformance suite: each checkpoint and model is built once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conformance import guide
from tests.conformance.families import Case, Family, build_case


@dataclass
class Run:
    """The guide's steps on one case: the bridge, the built model and its forward logits."""

    case: Case
    bridge: Any
    model: list[torch.nn.Module]
    logits: torch.Tensor


@pytest.fixture(scope="session")
def guide_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Family, bool], Run]:
    """``guide_run(family, tied)``: load, provide (TP = PP = 1) and forward, once per case."""
    from megatron.core import parallel_state as ps

    from bridge.runtime import reset_model_parallel

    root = tmp_path_factory.mktemp("conformance")
    runs: dict[tuple[str, bool], Run] = {}

    def get(family: Family, tied: bool) -> Run:
        key = (family.name, tied)
        if key not in runs:
            if ps.model_parallel_is_initialized() and (ps.get_tensor_model_parallel_world_size(),
                                                       ps.get_pipeline_model_parallel_world_size()) != (1, 1):
                reset_model_parallel()  # another test left TP/PP groups behind
            case = build_case(family, tied, root)
            bridge = guide.load(case.path, **({"trust_remote_code": True} if family.custom_code else {}))
            model = guide.provide(bridge)
            runs[key] = Run(case, bridge, model, guide.forward(model, case.input_ids))
        return runs[key]

    return get


def source_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(f))
    return out
