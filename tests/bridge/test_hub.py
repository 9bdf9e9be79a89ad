"""Hub IDs resolved offline from a Hugging Face cache built in the test (nothing is downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bridge import AutoBridge, CheckpointError, TrustRemoteCodeError
from bridge import hub
from bridge.inference import forward_logits
from harness.probes.fixtures.tiny_gpt import CONFIG_MODULE, MODELING_MODULE, make_custom_checkpoint
from tests.helpers.hub_cache import add_to_hub_cache, repo_folder
from tests.helpers.tiny import TINY_LLAMA, hf_logits, make_hf_checkpoint

REPO = "acme/tiny-llama"
VOCAB = TINY_LLAMA["vocab_size"]


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache at ``HF_HUB_CACHE``, with ``HF_HUB_OFFLINE=1``."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def no_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call into huggingface_hub's resolution fails the test."""
    import huggingface_hub

    def forbidden(*args, **kwargs):
        raise AssertionError(f"a Hub lookup happened: {args} {kwargs}")

    for name in ("snapshot_download", "try_to_load_from_cache", "hf_hub_download"):
        monkeypatch.setattr(huggingface_hub, name, forbidden)


def test_the_test_cache_is_one_huggingface_hub_reads(offline_cache: Path, tiny_llama_checkpoint: Path) -> None:
    from huggingface_hub import scan_cache_dir

    snapshot = add_to_hub_cache(offline_cache, REPO, tiny_llama_checkpoint, refs=("main", "v1.0"))
    info = scan_cache_dir(offline_cache)
    assert not info.warnings
    (repo,) = info.repos
    assert repo.repo_id == REPO and repo.repo_type == "model"
    (revision,) = repo.revisions
    assert revision.commit_hash == snapshot.name and revision.refs == frozenset({"main", "v1.0"})
    assert {f.file_name for f in revision.files} == {p.name for p in tiny_llama_checkpoint.iterdir() if p.is_file()}
    assert all((snapshot / f.file_name).is_symlink() for f in revision.files)


def test_hit_loads_and_exports_like_the_local_directory(offline_cache: Path, tiny_llama_checkpoint: Path,
                                                        tmp_path: Path) -> None:
    snapshot = add_to_hub_cache(offline_cache, REPO, tiny_llama_checkpoint)
    bridge = AutoBridge.from_hf_pretrained(REPO)
    assert bridge.hf_path == snapshot and bridge.hf_model_id == REPO
    assert bridge.source.commit == snapshot.name and bridge.source.offline
    model = bridge.to_megatron_model(load_weights=True, wrap_with_ddp=False)
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    diff = (forward_logits(model, ids, vocab_size=VOCAB) - hf_logits(tiny_llama_checkpoint, ids)).abs().max()
    assert diff.item() <= 1e-5
    bridge.save_hf_pretrained(model, tmp_path / "out")
    before = load_file(tiny_llama_checkpoint / "model.safetensors")
    after = load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(before) == sorted(after) and all(torch.equal(before[n], after[n]) for n in before)
    assert not (tmp_path / "out" / "config.json").is_symlink()  # a real file, not a link into the cache


def test_config_is_read_first_and_weights_only_when_needed(offline_cache: Path, tiny_llama_checkpoint: Path) -> None:
    snapshot = add_to_hub_cache(offline_cache, REPO, tiny_llama_checkpoint, files=["config.json"])
    bridge = AutoBridge.from_hf_pretrained(REPO)  # the cache holds the config only: enough to inspect
    assert bridge.transformer_config.num_layers == TINY_LLAMA["num_hidden_layers"]
    assert AutoBridge.can_handle(REPO)
    with pytest.raises(CheckpointError) as err:
        bridge.to_megatron_model(load_weights=True)
    msg = str(err.value)
    assert "*.safetensors weights" in msg and REPO in msg and str(repo_folder(offline_cache, REPO)) in msg
    assert "HF_HUB_OFFLINE" in msg and f"hf download {REPO}" in msg
    add_to_hub_cache(offline_cache, REPO, tiny_llama_checkpoint, commit=snapshot.name)  # the weights arrive
    assert (bridge.fetch(hub.WEIGHTS) / "model.safetensors").is_file()


def test_miss_says_what_where_and_how_to_fix(offline_cache: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        AutoBridge.from_hf_pretrained("acme/not-cached", revision="v2")
    msg = str(err.value)
    assert "config.json" in msg and "'acme/not-cached'" in msg and "'v2'" in msg
    assert str(repo_folder(offline_cache, "acme/not-cached")) in msg and "offline" in msg
    assert "hf download acme/not-cached --revision v2" in msg and "HF_HUB_CACHE" in msg
    assert not AutoBridge.can_handle("acme/not-cached")


def test_hf_home_and_local_files_only_are_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            tiny_llama_checkpoint: Path) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    snapshot = add_to_hub_cache(tmp_path / "home" / "hub", REPO, tiny_llama_checkpoint)
    assert hub.hub_cache_dir() == tmp_path / "home" / "hub" and not hub.hub_offline()
    source = hub.resolve_hf_source(REPO, files=hub.CONFIG, local_files_only=True)
    assert source.path == snapshot and source.offline
    other = tmp_path / "explicit"
    add_to_hub_cache(other, REPO, tiny_llama_checkpoint)
    assert hub.resolve_hf_source(REPO, cache_dir=other, local_files_only=True).path.parent.parent.parent == other


def test_pinned_revision_by_tag_and_by_commit(offline_cache: Path, tmp_path: Path) -> None:
    old = make_hf_checkpoint(tmp_path / "v1", seed=0)
    new = make_hf_checkpoint(tmp_path / "v2", seed=1)
    first = add_to_hub_cache(offline_cache, REPO, old, refs=("v1.0",))
    latest = add_to_hub_cache(offline_cache, REPO, new, refs=("main",))
    assert first.name != latest.name
    name = "model.embed_tokens.weight"
    for revision, snapshot, origin in [(None, latest, new), ("main", latest, new), ("v1.0", first, old),
                                       (first.name, first, old)]:
        bridge = AutoBridge.from_hf_pretrained(REPO, revision=revision)
        assert bridge.hf_path == snapshot and bridge.source.commit == snapshot.name, revision
        got = load_file(bridge.fetch(hub.WEIGHTS) / "model.safetensors")[name]
        assert torch.equal(got, load_file(origin / "model.safetensors")[name]), revision
    # later fetches use the commit resolved first, even when the branch moves on
    bridge = AutoBridge.from_hf_pretrained(REPO)
    (repo_folder(offline_cache, REPO) / "refs" / "main").write_text(first.name)
    assert bridge.fetch(hub.WEIGHTS) == latest
    with pytest.raises(CheckpointError, match="unknown-branch"):
        AutoBridge.from_hf_pretrained(REPO, revision="unknown-branch")


@pytest.mark.parametrize("bad", ["acme/../etc", "../acme/x", "/abs/acme/x", "acme/na me", "a/b/c", "acme//x",
                                 "acme/x.git", "acme/x\x00", "~/acme/x", "C:\\acme\\x", "acme--x/y", ""])
def test_malformed_ids_are_refused_before_any_lookup(bad: str, offline_cache: Path, no_lookup: None) -> None:
    with pytest.raises(CheckpointError) as err:
        AutoBridge.from_hf_pretrained(bad)
    assert "neither a local checkpoint directory" in str(err.value) and "Hub ID" in str(err.value)


@pytest.mark.parametrize("revision", ["../main", "main/../x", "/main", "ma in", "main\\x", ".", ""])
def test_malformed_revisions_are_refused_before_any_lookup(revision: str, offline_cache: Path,
                                                           no_lookup: None) -> None:
    with pytest.raises(CheckpointError, match="not a branch, tag or commit"):
        AutoBridge.from_hf_pretrained(REPO, revision=revision)


def test_a_local_directory_wins_and_takes_no_revision(tiny_llama_checkpoint: Path, no_lookup: None) -> None:
    assert AutoBridge.from_hf_pretrained(tiny_llama_checkpoint).source.is_hub is False
    with pytest.raises(CheckpointError, match="local directory, which has no revisions"):
        AutoBridge.from_hf_pretrained(tiny_llama_checkpoint, revision="main")


def _custom_repo(cache: Path, tmp_path: Path, repo: str) -> Path:
    sentinel = tmp_path / f"sentinel-{repo.replace('/', '-')}"
    src = make_custom_checkpoint(tmp_path / repo.replace("/", "-"), sentinel=sentinel)
    add_to_hub_cache(cache, repo, src)
    return sentinel


def test_custom_code_from_a_safe_org_runs_and_from_another_org_is_refused(offline_cache: Path,
                                                                          tmp_path: Path) -> None:
    trusted = _custom_repo(offline_cache, tmp_path, "nvidia/tiny-gpt")
    refused = _custom_repo(offline_cache, tmp_path, "someone/tiny-gpt")
    with pytest.raises(TrustRemoteCodeError) as err:
        AutoBridge.from_hf_pretrained("someone/tiny-gpt")
    assert "'someone' is not in SAFE_REPOS" in str(err.value) and not refused.exists()
    bridge = AutoBridge.from_hf_pretrained("nvidia/tiny-gpt")  # trust_remote_code=None: the org decides
    assert CONFIG_MODULE in trusted.read_text().split()
    assert (bridge.hf_path / f"{MODELING_MODULE}.py").is_symlink()  # the code came from the same snapshot
    with pytest.raises(TrustRemoteCodeError):
        AutoBridge.from_hf_pretrained("nvidia/tiny-gpt", trust_remote_code=False)
    AutoBridge.from_hf_pretrained("someone/tiny-gpt", trust_remote_code=True)
    assert CONFIG_MODULE in refused.read_text().split()


def test_a_copied_snapshot_stays_a_local_path(offline_cache: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _custom_repo(offline_cache, tmp_path, "nvidia/tiny-gpt")
    snapshot = next((repo_folder(offline_cache, "nvidia/tiny-gpt") / "snapshots").iterdir())
    with pytest.raises(TrustRemoteCodeError, match="pass hf_path='nvidia/tiny-gpt'"):
        AutoBridge.from_hf_pretrained(snapshot)
    (tmp_path / "work" / "nvidia").mkdir(parents=True)
    shutil.copytree(snapshot, tmp_path / "work" / "nvidia" / "tiny-gpt")
    monkeypatch.chdir(tmp_path / "work")
    with pytest.raises(TrustRemoteCodeError, match="exists on disk"):
        AutoBridge.from_hf_pretrained("nvidia/tiny-gpt")
