"""Version-aware errors, from the field history the harness generated from every release.

The default suite cannot install an older megatron-core, so the installed release is simulated:
``compat.installed_version`` and ``compat.config_fields`` are replaced by an older release's version
and field set, both read from ``bridge/data/field_history.json`` (no hand-written set). The slow
test does the same against a real older megatron-core in a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from bridge import compat, compat_release
from bridge.config import ConfigContainer, ModelConfig, ParallelismConfig
from bridge.config.recipes import llama3_8b_pretrain_config
from bridge.errors import UnsupportedFeatureError
from tests.helpers.tiny import TINY_LLAMA

REPO = Path(__file__).resolve().parents[3]
TINY = {**TINY_LLAMA, "architectures": ["LlamaForCausalLM"]}
OLD = "0.12.3"  # an installable release (pip) older than the pinned 0.16.1
EXAMPLE = "softmax_type"  # a real feature added after OLD: off-by-one / learnable softmax


@pytest.fixture(scope="module")
def history() -> dict:
    data = compat.field_history()
    if not data.get("releases"):
        pytest.fail("bridge/data/field_history.json is missing or empty; generate it with `mcore-compat matrix`")
    return data


def _simulate(monkeypatch: pytest.MonkeyPatch, version: str) -> frozenset[str]:
    fields = compat.fields_in_release(version)
    for module in (compat, compat_release):  # the surface's names and the ones every function looks up
        monkeypatch.setattr(module, "installed_version", lambda: Version(version))
        monkeypatch.setattr(module, "config_fields", lambda class_name="TransformerConfig": fields)
    return fields


def test_history_agrees_with_the_installed_release(history: dict) -> None:
    installed = str(compat.installed_version())
    assert installed in history["releases"]
    assert compat.fields_in_release(installed) == compat.config_fields("TransformerConfig")


def test_every_field_added_after_an_old_release_fails_there_before_building(
        history: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    newer = sorted(compat.config_fields() - compat.fields_in_release(OLD))
    assert EXAMPLE in newer and len(newer) > 10
    _simulate(monkeypatch, OLD)
    for name in newer:
        first = history["fields"][name]["first"]
        assert Version(first) > Version(OLD)
        with pytest.raises(UnsupportedFeatureError) as err:
            ModelConfig(hf_config=TINY, overrides={name: 1})  # fails here: nothing is built
        msg = str(err.value)
        assert f"'{name}'" in msg and OLD in msg and f">= {first}" in msg, msg


def test_recipe_and_container_overrides_fail_the_same_way(history: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ConfigContainer(model=ModelConfig(hf_config=TINY))
    _simulate(monkeypatch, OLD)
    first = history["fields"][EXAMPLE]["first"]
    for attempt in (lambda: llama3_8b_pretrain_config(softmax_type="off-by-one"),
                    lambda: cfg.with_overrides({EXAMPLE: "off-by-one"}),
                    lambda: cfg.with_overrides({f"model.{EXAMPLE}": "off-by-one"}),
                    lambda: cfg.model.with_overrides(softmax_type="off-by-one")):
        with pytest.raises(UnsupportedFeatureError, match=rf"'{EXAMPLE}' needs megatron-core >= {first}, but {OLD}"):
            attempt()
    # fields the old release has still work there
    assert cfg.with_overrides(recompute_granularity="selective").model.recompute_granularity == "selective"


def test_typo_on_an_old_release_names_its_closest_fields(history: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    _simulate(monkeypatch, OLD)
    with pytest.raises(Exception) as err:
        ModelConfig(hf_config=TINY, overrides={"softmax_typ": "off-by-one"})
    assert "'softmax_scale'" in str(err.value) and OLD in str(err.value)


def test_new_name_of_a_rename_is_translated_for_a_release_with_the_old_name(
        history: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    renames = history["renames"]
    old_name = next(o for o, n in renames.items() if n == "num_layers_in_first_pipeline_stage")
    before = next(v for v in history["releases"]
                  if old_name in compat.fields_in_release(v)
                  and "num_layers_in_first_pipeline_stage" not in compat.fields_in_release(v))
    _simulate(monkeypatch, before)
    cfg = ConfigContainer(model=ModelConfig(hf_config=TINY, overrides={"num_layers_in_first_pipeline_stage": 1}),
                          parallelism=ParallelismConfig(pipeline_model_parallel_size=2))
    kwargs = compat.adapt_config_kwargs(cfg.to_provider(finalize=False).transformer_config_kwargs())
    assert kwargs[old_name] == 1 and "num_layers_in_first_pipeline_stage" not in kwargs


def test_removed_and_renamed_fields_on_the_installed_release(history: dict) -> None:
    installed = compat.installed_version()
    provider_fields = {f.name for f in dataclasses.fields(ModelConfig(hf_config=TINY).base_provider())}
    removed = sorted(n for n, info in history["fields"].items()
                     if info["last"] and Version(info["last"]) < installed and n not in history["renames"]
                     and n not in provider_fields)  # e.g. rotary_percent moved to GPTModel: a provider field
    assert "pipeline_model_parallel_split_rank" in removed
    for name in removed:
        with pytest.raises(UnsupportedFeatureError, match=rf"'{name}' exists in megatron-core .* to "
                                                          rf"{history['fields'][name]['last']} only"):
            ModelConfig(hf_config=TINY, overrides={name: 1})
    for old, new in history["renames"].items():
        if old not in compat.config_fields():
            with pytest.raises(UnsupportedFeatureError, match=rf"'{old}' was renamed to '{new}'"):
                ModelConfig(hf_config=TINY, overrides={old: 1})


# -- a real older release ------------------------------------------------------------------------

_PROBE = """
import json
from bridge import compat
from bridge.config import ModelConfig
from bridge.config.recipes import check_all_recipes
from tests.helpers.tiny import TINY_LLAMA

out = {"version": str(compat.installed_version()), "has_example": %(example)r in compat.config_fields()}
try:
    ModelConfig(hf_config={**TINY_LLAMA, "architectures": ["LlamaForCausalLM"]},
                overrides={%(example)r: "off-by-one"})
    out["error"] = None
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"
out["recipes"] = check_all_recipes()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_real_old_release_refuses_a_newer_field(history: dict, tmp_path: Path) -> None:
    """megatron-core 0.12.3 unpacked from its PyPI wheel and put first on PYTHONPATH."""
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", f"megatron-core=={OLD}",
         "-d", str(tmp_path / "wheel"), "-q"], capture_output=True, text=True, timeout=300)
    assert download.returncode == 0, download.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)])}
    run = subprocess.run([sys.executable, "-c", _PROBE % {"example": EXAMPLE}], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert result["version"] == OLD and result["has_example"] is False
    first = history["fields"][EXAMPLE]["first"]
    assert result["error"] == (
        f"UnsupportedFeatureError: TransformerConfig field '{EXAMPLE}' needs megatron-core >= {first}, but {OLD} "
        f"is installed. Upgrade with: pip install 'megatron-core>={first}'")
    assert result["recipes"]["llama3_8b_pretrain"] == "ok", result["recipes"]
