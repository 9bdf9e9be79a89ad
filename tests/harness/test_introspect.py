"""harness.introspect: fields as the dataclass exposes them; pypi and git agree; the cache."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness.cache import JsonCache
from harness.introspect import MODULE_CHECKS, Introspector
from tests.harness.conftest import REPO_RELEASES


def test_installed_release_matches_runtime_dataclass(introspector):
    """The static view of the installed 0.16.1 equals what importing it gives."""
    import megatron.core.transformer.transformer_config as tc_mod  # a dependency of this project
    intro = introspector.introspect("installed")
    assert intro.error is None
    for cls, static in ((tc_mod.TransformerConfig, intro.transformer_config),
                        (tc_mod.MLATransformerConfig, intro.subclasses["MLATransformerConfig"])):
        runtime = dataclasses.fields(cls)
        assert [f.name for f in runtime] == list(static)
        for f in runtime:
            owner = next(c.__name__ for c in cls.__mro__
                         if "__dataclass_fields__" in c.__dict__ and f.name in c.__dict__.get("__annotations__", {}))
            assert static[f.name]["declared_in"] == owner, f.name
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                assert static[f.name]["required"], f.name
            elif f.default_factory is not dataclasses.MISSING:
                assert static[f.name]["default_factory"], f.name


@pytest.mark.parametrize("version", REPO_RELEASES)
def test_pypi_and_git_specs_agree(version, introspector, pypi_scans, release_repo):
    via_git = introspector.introspect(f"git:core_v{version}", repo=str(release_repo))
    via_pypi = pypi_scans[version]
    assert via_git.error is None and via_pypi.error is None
    assert via_git.revision.version == version
    assert via_git.transformer_config == via_pypi.transformer_config
    assert via_git.subclasses == via_pypi.subclasses
    assert via_git.gpt_model_params == via_pypi.gpt_model_params
    assert via_git.layer_specs == via_pypi.layer_specs
    assert via_git.modules == via_pypi.modules
    assert via_git.module_index == via_pypi.module_index


def test_inherited_fields_and_override_order(pypi_scans):
    tc = pypi_scans["0.13.0"].transformer_config
    names = list(tc)
    # ModelParallelConfig's fields come first (base class), with their declaring class
    assert tc["tensor_model_parallel_size"]["declared_in"] == "ModelParallelConfig"
    assert tc["num_layers"]["declared_in"] == "TransformerConfig"
    first_own = min(i for i, n in enumerate(names) if tc[n]["declared_in"] == "TransformerConfig")
    assert all(tc[n]["declared_in"] == "ModelParallelConfig" for n in names[:first_own])
    mla = pypi_scans["0.13.0"].subclasses["MLATransformerConfig"]
    # MLA re-declares normalization: it keeps TransformerConfig's position but MLA's default
    assert list(mla)[: len(tc)] == names
    assert mla["normalization"]["declared_in"] == "MLATransformerConfig"
    assert mla["normalization"]["default"] == "'RMSNorm'" != tc["normalization"]["default"]


def test_recent_releases_record_argparse_metadata(pypi_scans):
    field = pypi_scans["0.17.0"].transformer_config["num_layers"]
    assert field["metadata"] == {"argparse_meta": {"default": None}}


def test_modules_and_gpt_params(pypi_scans):
    old, new = pypi_scans["0.10.0"], pypi_scans["0.16.1"]
    assert set(old.modules) == set(MODULE_CHECKS)
    assert not old.modules["mtp"] and new.modules["mtp"]
    assert "mtp_block_spec" in new.gpt_model_params and "mtp_block_spec" not in old.gpt_model_params
    assert "get_gpt_layer_local_spec" in old.layer_specs
    assert "config" in old.layer_specs["get_gpt_layer_local_spec"] or old.layer_specs["get_gpt_layer_local_spec"]


def test_release_without_transformer_config(introspector):
    intro = introspector.introspect("pypi:0.1.0")
    assert intro.error is None and intro.transformer_config == {}
    assert any("no class TransformerConfig" in n for n in intro.notes)


def test_old_release_with_only_a_broken_sdist_uses_a_wheel(introspector):
    """0.4.0's sdist cannot even build metadata; a cp310 wheel is fetched instead."""
    intro = introspector.introspect("pypi:0.4.0")
    assert intro.error is None and "num_moe_experts" in intro.transformer_config


def test_cache_hit_on_second_scan(archive_cache, tmp_path, release_repo):
    first = Introspector(archive_cache, facts_dir=tmp_path)
    a = first.introspect("git:core_v0.13.0", repo=str(release_repo))
    assert first.cache.stats.writes > 0 and first.cache.stats.hits == 0
    second = Introspector(archive_cache, facts_dir=tmp_path)
    b = second.introspect("pypi:0.13.0")  # same blobs, other source kind: shared entries
    assert second.cache.stats.misses == 0 and second.cache.stats.hits > 0
    assert a.transformer_config == b.transformer_config


def test_corrupt_cache_entry_is_recomputed(archive_cache, tmp_path):
    Introspector(archive_cache, facts_dir=tmp_path).introspect("pypi:0.10.0")
    entries = sorted((tmp_path / "facts").rglob("*.json"), key=lambda p: p.stat().st_size)
    biggest = entries[-1]  # transformer_config.py's facts
    header, body = biggest.read_text().split("\n", 1)
    payload = json.loads(body)
    payload["classes"].pop(next(iter(payload["classes"])))  # tamper, keep valid JSON
    biggest.write_text(header + "\n" + json.dumps(payload))
    entries[0].write_text("{ not json")
    again = Introspector(archive_cache, facts_dir=tmp_path)
    result = again.introspect("pypi:0.10.0")
    assert again.cache.stats.corrupt == 2
    assert result.transformer_config == Introspector(archive_cache, use_cache=False).introspect(
        "pypi:0.10.0").transformer_config
    assert JsonCache(tmp_path).get(biggest.stem) is not None  # rewritten, valid again


def test_unparsable_revision_is_an_error_not_an_exception(introspector, synthetic_repo):
    intro = introspector.introspect("git:broken", repo=str(synthetic_repo))
    assert intro.error is not None
    assert "transformer_config.py" in intro.error and "line 1" in intro.error
