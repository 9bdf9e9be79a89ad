"""Bridge registration by HF class or by architecture string, and dispatch on ``config.architectures``.

Registrations made here go through the ``registry_sandbox`` fixture, which removes them afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM, PretrainedConfig

from bridge import registry
from bridge.auto_bridge import AutoBridge
from bridge.errors import MappingError, TrustRemoteCodeError, UnsupportedModelError
from bridge.models.llama.bridge import LlamaBridge
from bridge.registry import HFClass, MegatronModelBridge, bridge_for_architectures, registered_architectures
from harness.probes.fixtures.tiny_gpt import ARCHITECTURE as TINY_GPT_ARCH
from harness.probes.fixtures.tiny_gpt import make_custom_checkpoint

# An architecture name whose class exists in no library: registering it must import nothing.
GHOST_ARCH = "GhostlyTestModelForCausalLM"


def _new_bridge_class(name: str = "TestBridge") -> type[MegatronModelBridge]:
    """A fresh subclass (reusing Llama's provider and mapping table) that nobody registered yet."""
    return type(name, (LlamaBridge,), {"family": f"test_{name.lower()}"})


def _config_dir(src: Path, dst: Path, **changes) -> Path:
    """A copy of checkpoint ``src`` with ``config.json`` keys replaced (``None`` deletes a key)."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


# -- registration by type ------------------------------------------------------------------------

def test_llama_is_registered_by_its_hf_class():
    assert "LlamaForCausalLM" in registered_architectures()
    assert registry._BY_ARCH["LlamaForCausalLM"] is LlamaBridge
    assert (LlamaBridge.registration, LlamaBridge.hf_class, LlamaBridge.architecture, LlamaBridge.target) == (
        "type", LlamaForCausalLM, "LlamaForCausalLM", "GPTModel")


def test_registered_bridges_are_sorted_by_architecture_and_consistent():
    archs = registered_architectures()
    assert archs == sorted(archs) == AutoBridge.list_supported_models()
    assert registry.registered_bridges() == [registry._BY_ARCH[a] for a in archs]
    for arch in archs:
        cls = registry._BY_ARCH[arch]
        assert cls.registration in ("type", "string"), (arch, cls.registration)
        if cls.registration == "type" and cls.architecture == arch:
            assert cls.hf_class is not None and cls.hf_class.__name__ == arch


def test_type_registration_with_a_target_class_records_its_name(registry_sandbox):
    source = type("SandboxForCausalLM", (), {})
    target = type("SandboxModel", (), {})
    cls = MegatronModelBridge.register_bridge(source=source, target=target)(_new_bridge_class())
    assert registry_sandbox["SandboxForCausalLM"] is cls
    assert (cls.registration, cls.hf_class, cls.target) == ("type", source, "SandboxModel")


def test_lazy_type_registration_imports_the_hf_class_on_first_use(registry_sandbox, tmp_path):
    module = tmp_path / "sandbox_hf_models.py"
    module.write_text("class SandboxLazyForCausalLM:\n    config_class = None\n")
    sys.path.insert(0, str(tmp_path))
    try:
        cls = MegatronModelBridge.register_bridge(source=HFClass("sandbox_hf_models", "SandboxLazyForCausalLM"))(
            _new_bridge_class())
        assert "sandbox_hf_models" not in sys.modules  # registered, not imported
        assert (cls.registration, cls.architecture) == ("type", "SandboxLazyForCausalLM")
        assert registry_sandbox["SandboxLazyForCausalLM"] is cls
        assert cls.hf_class is sys.modules["sandbox_hf_models"].SandboxLazyForCausalLM  # imported on first use
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("sandbox_hf_models", None)
    missing = MegatronModelBridge.register_bridge(source=HFClass("transformers", "NoSuchForCausalLM"))(
        _new_bridge_class())
    with pytest.raises(UnsupportedModelError, match="NoSuchForCausalLM could not be imported"):
        missing.hf_class


def test_loading_the_families_imports_no_transformers_model_code():
    """Conversion never builds an HF model: the families register their classes lazily (seconds of imports)."""
    code = ("import sys, bridge.models, bridge.registry as r; "
            "mods = sorted(m for m in sys.modules if m.startswith('transformers.models.') and '.modeling_' in m and '.auto.' not in m); "
            "print(mods); r._BY_ARCH['LlamaForCausalLM'].hf_class; "
            "print('transformers.models.llama.modeling_llama' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True", out


# -- registration by string ----------------------------------------------------------------------

def test_string_registration_imports_nothing_and_dispatches_from_config_dicts(registry_sandbox):
    modules_before = set(sys.modules)
    cls = MegatronModelBridge.register_bridge(source=GHOST_ARCH)(_new_bridge_class())
    assert set(sys.modules) == modules_before
    assert (cls.registration, cls.hf_class, cls.architecture, cls.target) == ("string", None, GHOST_ARCH, "GPTModel")
    raw = json.loads(json.dumps({"architectures": [GHOST_ARCH], "model_type": "ghost"}))
    assert bridge_for_architectures(raw["architectures"]) is cls
    assert GHOST_ARCH in AutoBridge.list_supported_models()


def test_string_registration_dispatches_from_a_pretrained_config(registry_sandbox):
    cls = MegatronModelBridge.register_bridge(source=GHOST_ARCH)(_new_bridge_class())
    auto = AutoBridge.from_hf_config(PretrainedConfig(architectures=[GHOST_ARCH]))
    assert type(auto.bridge) is cls
    # the first *known* name of config.architectures wins
    assert bridge_for_architectures(["NotRegisteredAtAll", GHOST_ARCH]) is cls


def test_string_registration_dispatches_a_checkpoint_by_architecture(registry_sandbox, tiny_llama_checkpoint, tmp_path):
    cls = MegatronModelBridge.register_bridge(source=GHOST_ARCH)(_new_bridge_class())
    ckpt = _config_dir(tiny_llama_checkpoint, tmp_path / "ghost", architectures=[GHOST_ARCH])
    assert AutoBridge.can_handle(ckpt)
    auto = AutoBridge.from_hf_pretrained(ckpt)
    assert type(auto.bridge) is cls
    assert auto.hf_config.architectures == [GHOST_ARCH]
    provider = auto.to_megatron_provider(load_weights=False)
    assert (provider.num_layers, provider.hidden_size, provider.num_query_groups) == (2, 64, 2)


# -- typos never match silently ------------------------------------------------------------------

@pytest.mark.parametrize("typo", ["LlamaForCausalLMM", "llamaforcausallm", "LlamaForCausalLm", "LlamaForCausalLM ",
                                  "LlamaForCausaLM"])
def test_typo_in_architecture_is_not_handled_and_names_the_closest(tiny_llama_checkpoint, tmp_path, typo):
    ckpt = _config_dir(tiny_llama_checkpoint, tmp_path / "typo", architectures=[typo])
    assert AutoBridge.can_handle(tiny_llama_checkpoint)
    assert not AutoBridge.can_handle(ckpt)
    with pytest.raises(UnsupportedModelError) as exc:
        AutoBridge.from_hf_pretrained(ckpt)
    msg = str(exc.value)
    assert repr(typo) in msg and "closest supported name is 'LlamaForCausalLM'" in msg
    missing = [a for a in registered_architectures() if a not in msg]
    assert not missing, f"supported architectures missing from the message: {missing}"
    with pytest.raises(UnsupportedModelError):
        AutoBridge.from_hf_config(LlamaConfig(architectures=[typo]))


@pytest.mark.parametrize("changes", [{"architectures": None}, {"architectures": []}])
def test_config_without_architectures_is_unsupported(tiny_llama_checkpoint, tmp_path, changes):
    ckpt = _config_dir(tiny_llama_checkpoint, tmp_path / "noarch", **changes)
    assert not AutoBridge.can_handle(ckpt)
    with pytest.raises(UnsupportedModelError, match="architectures"):
        AutoBridge.from_hf_pretrained(ckpt)


def test_unreadable_checkpoints_are_not_handled(tmp_path):
    assert not AutoBridge.can_handle(tmp_path / "does-not-exist")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert not AutoBridge.can_handle(bad)
    (bad / "config.json").write_text("[1, 2]")
    assert not AutoBridge.can_handle(bad)


def test_unrelated_name_gets_no_closest_hint():
    with pytest.raises(UnsupportedModelError) as exc:
        bridge_for_architectures(["Zzzzzzzz"])
    assert "closest" not in str(exc.value)


# -- auto_map configs dispatch on architectures too ----------------------------------------------

def test_native_model_type_with_auto_map_dispatches_on_architectures(tiny_llama_checkpoint, tmp_path):
    ckpt = _config_dir(tiny_llama_checkpoint, tmp_path / "automap",
                       auto_map={"AutoConfig": "configuration_custom.CustomConfig",
                                 "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"})
    assert AutoBridge.can_handle(ckpt)
    auto = AutoBridge.from_hf_pretrained(ckpt)  # no code file exists: none may be needed
    assert type(auto.bridge) is LlamaBridge


@pytest.fixture
def tiny_gpt_bridge(registry_sandbox) -> type[MegatronModelBridge]:
    """Whatever bridge handles TinyGPT (registering a test one if no family does yet)."""
    if TINY_GPT_ARCH not in registry_sandbox:
        MegatronModelBridge.register_bridge(source=TINY_GPT_ARCH)(_new_bridge_class("TinyGPTTestBridge"))
    return registry_sandbox[TINY_GPT_ARCH]


def test_custom_code_checkpoint_dispatches_on_architectures_before_any_code_runs(tiny_gpt_bridge, tmp_path):
    sentinel = tmp_path / "sentinel.txt"
    ckpt = make_custom_checkpoint(tmp_path / "tinygpt", sentinel=sentinel)
    assert AutoBridge.can_handle(ckpt)
    with pytest.raises(TrustRemoteCodeError):  # a known architecture: the trust policy is next
        AutoBridge.from_hf_pretrained(ckpt)
    typo = _config_dir(ckpt, tmp_path / "typo", architectures=[TINY_GPT_ARCH + "X"])
    assert not AutoBridge.can_handle(typo)
    with pytest.raises(UnsupportedModelError, match=repr(TINY_GPT_ARCH)):  # refused before trust is asked
        AutoBridge.from_hf_pretrained(typo, trust_remote_code=True)
    assert not sentinel.exists(), "checkpoint code ran before dispatch"
    auto = AutoBridge.from_hf_pretrained(ckpt, trust_remote_code=True)
    assert type(auto.bridge) is tiny_gpt_bridge
    assert sentinel.exists()  # the config class came from the checkpoint


# -- registration errors -------------------------------------------------------------------------

def test_reregistering_an_architecture_to_another_class_is_an_error(registry_sandbox):
    first = MegatronModelBridge.register_bridge(source=GHOST_ARCH)(_new_bridge_class("FirstBridge"))
    assert MegatronModelBridge.register_bridge(source=GHOST_ARCH)(first) is first  # same class: fine
    with pytest.raises(MappingError) as exc:
        MegatronModelBridge.register_bridge(source=GHOST_ARCH)(_new_bridge_class("SecondBridge"))
    assert all(s in str(exc.value) for s in (GHOST_ARCH, "FirstBridge", "SecondBridge"))
    assert registry_sandbox[GHOST_ARCH] is first


@pytest.mark.parametrize("source", ["LlamaForCausalLM", type("LlamaForCausalLM", (), {})])
def test_a_real_family_cannot_be_taken_over(registry_sandbox, source):
    with pytest.raises(MappingError, match="LlamaBridge"):
        MegatronModelBridge.register_bridge(source=source)(_new_bridge_class("Usurper"))
    assert registry_sandbox["LlamaForCausalLM"] is LlamaBridge


@pytest.mark.parametrize("source", ["", "Llama-ForCausalLM", "my model", "1Model", "pkg.LlamaForCausalLM",
                                    "LlamaForCausalLM ", "Llama/CausalLM", "Llama\nForCausalLM"])
def test_non_identifier_strings_are_rejected(registry_sandbox, source):
    before = dict(registry_sandbox)
    with pytest.raises(MappingError, match="architecture string"):
        MegatronModelBridge.register_bridge(source=source)
    assert registry_sandbox == before


@settings(max_examples=50, deadline=None)
@given(source=st.text(max_size=12).filter(lambda s: not s.isidentifier()))
def test_any_non_identifier_string_is_rejected(source):
    with pytest.raises(MappingError):
        MegatronModelBridge.register_bridge(source=source)


@pytest.mark.parametrize("source", [None, 42, ["LlamaForCausalLM"], LlamaConfig()])
def test_source_must_be_a_class_or_a_string(source):
    with pytest.raises(MappingError, match="source"):
        MegatronModelBridge.register_bridge(source=source)


def test_only_bridge_subclasses_can_be_registered(registry_sandbox):
    with pytest.raises(MappingError, match="MegatronModelBridge"):
        MegatronModelBridge.register_bridge(source=GHOST_ARCH)(type("NotABridge", (), {}))
    assert GHOST_ARCH not in registry_sandbox
