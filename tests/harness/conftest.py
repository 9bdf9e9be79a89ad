"""Fixtures of the harness tests.

The release repository is built once (git fast-import of real PyPI archives, cached under
the user cache, shared by xdist workers through a file lock) from a small subset chosen for
what it exhibits:

- 0.10.0 -> 0.11.0: ``first_pipeline_num_layers`` is renamed ``num_layers_in_first_pipeline_stage``;
  ``attention_backend`` appears;
- 0.13.0: ``pipeline_model_parallel_layout`` appears;
- 0.16.1: the megatron-core installed in this environment (runtime cross-check);
- 0.17.0: ``moe_extended_tp`` disappears (and the release needs Python >= 3.12 to install).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cache import default_cache_dir
from harness.introspect import Introspection, Introspector
from harness.release_repo import SyntheticCommit, build_release_repo, write_history

REPO_RELEASES = ("0.10.0", "0.11.0", "0.13.0", "0.16.1", "0.17.0")

MPC_SOURCE = '''
from dataclasses import dataclass

@dataclass
class ModelParallelConfig:
    tensor_model_parallel_size: int = 1
    sequence_parallel: bool = False
'''

TC_SOURCE = '''
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from ..model_parallel_config import ModelParallelConfig


@dataclass
class TransformerConfig(ModelParallelConfig):
    KIND: ClassVar[str] = "gpt"
    num_layers: int = 0
    hidden_size: int = 0
    {extra}
'''


def tc_source(extra: str = "") -> str:
    return TC_SOURCE.replace("{extra}", extra)


NETWORK_FIXTURES = frozenset({"archive_cache"})
"""Fixtures that read megatron-core releases through the shared cache (``$MCORE_COMPAT_CACHE``): on an
empty cache they download them from the package index, so every test using one is marked ``network``."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if NETWORK_FIXTURES & set(getattr(item, "fixturenames", ())) and item.path.is_relative_to(here):
            item.add_marker(pytest.mark.network)


@pytest.fixture(scope="session")
def archive_cache() -> Path:
    """Where release archives (and the release repository) are cached across runs."""
    return default_cache_dir()


@pytest.fixture(scope="session")
def release_repo(archive_cache: Path) -> Path:
    return build_release_repo(REPO_RELEASES, cache_dir=archive_cache)


@pytest.fixture(scope="session")
def session_facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("facts")


@pytest.fixture(scope="session")
def introspector(archive_cache: Path, session_facts: Path) -> Introspector:
    """Archives from the shared cache; parsed facts in a private session directory."""
    return Introspector(archive_cache, facts_dir=session_facts)


@pytest.fixture(scope="session")
def pypi_scans(introspector: Introspector) -> dict[str, Introspection]:
    return {v: introspector.introspect(f"pypi:{v}") for v in REPO_RELEASES}


@pytest.fixture(scope="session")
def synthetic_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny history: a field added, a field renamed, a default changed, then a broken file."""
    mpc = "megatron/core/model_parallel_config.py"
    tc = "megatron/core/transformer/transformer_config.py"
    commits = [
        SyntheticCommit("base", {mpc: MPC_SOURCE, tc: tc_source("ffn_size: int = 4")}, tag="core_v0.8.0",
                        timestamp=1_700_000_000),
        SyntheticCommit("unrelated file", {"README.md": "hello"}, timestamp=1_700_000_100),
        SyntheticCommit("add rope", {tc: tc_source("ffn_size: int = 4\n    use_rope: bool = False")},
                        timestamp=1_700_000_200),
        SyntheticCommit("rename ffn", {tc: tc_source("ffn_hidden_size: int = 4\n    use_rope: bool = False")},
                        tag="core_v0.9.0", timestamp=1_700_000_300),
        SyntheticCommit("default", {tc: tc_source("ffn_hidden_size: int = 4\n    use_rope: bool = True")},
                        timestamp=1_700_000_400),
        SyntheticCommit("broken", {tc: "class TransformerConfig(:\n"}, tag="broken", timestamp=1_700_000_500),
        SyntheticCommit("fixed", {tc: tc_source("ffn_hidden_size: int = 4\n    use_rope: bool = True")},
                        timestamp=1_700_000_600),
    ]
    return write_history(tmp_path_factory.mktemp("synthetic") / "repo", commits)
