"""The trust policy's whole table, its Hub-ID validator against huggingface_hub's, and fuzzing."""

from __future__ import annotations

import json
import os
import string
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import CheckpointError, TrustRemoteCodeError
from bridge.trust import (
    SAFE_REPOS,
    code_references,
    decide_trust,
    hub_id_from_cache_path,
    hub_id_problem,
    is_hub_id,
    is_safe_repo,
    needs_remote_code,
    remote_code_files,
    require_trust,
)
from harness.probes.fixtures.tiny_gpt import make_custom_checkpoint

SAFE_ORG, UNSAFE_ORG = "nvidia", "evil-org"
SHA = "0123456789abcdef0123456789abcdef01234567"
_SAFE_LOWER = {o.lower() for o in SAFE_REPOS}


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _dir(root: Path, org: str) -> Path:
    d = root / "ckpts" / org / "model"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _existing_relative_dir(root: Path, org: str) -> str:
    (root / org / "model").mkdir(parents=True)
    return f"{org}/model"


def _existing_relative_file(root: Path, org: str) -> str:
    (root / org).mkdir()
    (root / org / "model").write_text("{}")
    return f"{org}/model"


def _relative_symlink_to_dir(root: Path, org: str) -> str:
    (root / org).mkdir()
    (root / org / "model").symlink_to(_dir(root, org), target_is_directory=True)
    return f"{org}/model"


def _broken_relative_symlink(root: Path, org: str) -> str:
    (root / org).mkdir()
    (root / org / "model").symlink_to(root / "nowhere")
    return f"{org}/model"


def _absolute_symlink(root: Path, org: str) -> str:
    link = root / "link"
    link.symlink_to(_dir(root, org), target_is_directory=True)
    return str(link)


def _cache_snapshot(root: Path, org: str) -> Path:
    snap = root / "hub" / f"models--{org}--model" / "snapshots" / SHA
    snap.mkdir(parents=True)
    return snap


# (form, factory(tmp_dir, org) -> hf_path, is a Hub ID). Only Hub IDs may be trusted implicitly.
PATH_FORMS: list[tuple[str, Callable[[Path, str], object], bool]] = [
    ("hub-id", lambda r, o: f"{o}/model", True),
    ("hub-id-upper-org", lambda r, o: f"{o.upper()}/model", True),
    ("hub-id-dotted-name", lambda r, o: f"{o}/Model-1.5B_v2", True),
    ("absolute-existing", lambda r, o: str(_dir(r, o)), False),
    ("absolute-missing", lambda r, o: f"/nonexistent/{o}/model", False),
    ("dot-relative", lambda r, o: f"./{o}/model", False),
    ("dotdot-relative", lambda r, o: f"../{o}/model", False),
    ("relative-existing-dir", _existing_relative_dir, False),
    ("relative-existing-file", _existing_relative_file, False),
    ("relative-symlink-to-dir", _relative_symlink_to_dir, False),
    ("relative-broken-symlink", _broken_relative_symlink, False),
    ("absolute-symlink-to-dir", _absolute_symlink, False),
    ("home", lambda r, o: f"~/{o}/model", False),
    ("home-user", lambda r, o: f"~{o}/model", False),
    ("windows-backslash", lambda r, o: f"C:\\{o}\\model", False),
    ("windows-forward", lambda r, o: f"C:/{o}/model", False),
    ("windows-drive-relative", lambda r, o: f"C:{o}/model", False),
    ("windows-relative", lambda r, o: f"{o}\\model", False),
    ("unc", lambda r, o: f"\\\\server\\share\\{o}\\model", False),
    ("unc-forward", lambda r, o: f"//server/{o}", False),
    ("path-relative-missing", lambda r, o: Path(f"{o}/model"), False),
    ("path-absolute", lambda r, o: _dir(r, o), False),
    ("pure-posix-path", lambda r, o: PurePosixPath(f"{o}/model"), False),
    ("bytes", lambda r, o: f"{o}/model".encode(), False),
    ("cache-snapshot-str", lambda r, o: str(_cache_snapshot(r, o)), False),
    ("cache-snapshot-path", _cache_snapshot, False),
    ("cache-snapshot-relative", lambda r, o: os.path.relpath(_cache_snapshot(r, o), r), False),
]


@pytest.mark.parametrize("org", [SAFE_ORG, UNSAFE_ORG])
@pytest.mark.parametrize("trust", [True, False, None])
@pytest.mark.parametrize(("form", "factory", "hub_form"), PATH_FORMS, ids=[f[0] for f in PATH_FORMS])
def test_policy_table(in_tmp: Path, form: str, factory, hub_form: bool, trust, org: str) -> None:
    hf_path = factory(in_tmp, org)
    expected = trust if trust is not None else (hub_form and org == SAFE_ORG)
    decision = decide_trust(hf_path, trust)
    assert decision.trusted is expected, (hf_path, decision)
    assert is_safe_repo(hf_path, trust) is expected
    if expected:
        require_trust(hf_path, trust, what="the model")
    else:
        with pytest.raises(TrustRemoteCodeError) as info:
            require_trust(hf_path, trust, what="the model")
        assert isinstance(info.value, ValueError)
        assert "trust_remote_code=True" in str(info.value)
        assert f"Found: trust_remote_code={trust}" in str(info.value)


@pytest.mark.parametrize(
    ("hf_path", "phrase"),
    [
        ("\\\\server\\share\\nvidia\\model", "a UNC path"),
        ("//server/nvidia", "a UNC path"),
        ("C:\\nvidia\\model", "a Windows drive path"),
        ("C:/nvidia/model", "a Windows drive path"),
        ("nvidia\\model", "a Windows path"),
        ("/nvidia/model", "an absolute path"),
        ("~/nvidia/model", "a home-relative path"),
        ("./nvidia/model", "a relative path"),
        ("..", "a relative path"),
        (Path("nvidia/model"), f"({type(Path()).__name__} object)"),
        (b"nvidia/model", "(bytes object)"),
    ],
)
def test_local_paths_are_named_as_such(hf_path: object, phrase: str) -> None:
    reason = decide_trust(hf_path, None).reason
    assert phrase in reason and "local paths are never trusted implicitly" in reason


def test_local_dir_named_like_safe_hub_id_is_not_trusted(in_tmp: Path) -> None:
    """``tmp/nvidia/model`` as a relative path that exists is local, exactly as transformers
    would load it; the same string with no such directory is the Hub repository."""
    assert is_safe_repo("tmp/nvidia/model", None) is False  # not even a Hub ID
    assert is_safe_repo("nvidia/model", None) is True
    (in_tmp / "nvidia" / "model").mkdir(parents=True)
    assert is_safe_repo("nvidia/model", None) is False
    assert "exists on disk" in decide_trust("nvidia/model", None).reason
    os.chdir(in_tmp / "nvidia")
    assert is_safe_repo("model", None) is False


@pytest.mark.parametrize("org", sorted(SAFE_REPOS))
def test_every_safe_org_is_trusted_in_any_case(in_tmp: Path, org: str) -> None:
    for spelling in (org, org.lower(), org.upper()):
        assert is_safe_repo(f"{spelling}/some-model", None), spelling
    assert not is_safe_repo(f"{org}x/some-model", None)
    assert not is_safe_repo(f"x{org}/some-model", None)


INVALID_HUB_IDS = [
    "org//name", "a/b/c", "-org/name", "org/na..me", "", "org", "/org/name", "org/name/",
    "org/-name", "org/name-", "org/.name", "org/name.", "org/na--me", "o--rg/name", "org/name.git",
    "org/" + "a" * 97, "o" * 97 + "/name", "org/na me", "org/name ", " org/name", "org/namé",
    "org/name\n", "org/name\x00", "org/name@main", "org/name:rev", "org\\name", "org/na/",
]
VALID_HUB_IDS = ["a/b", "_x/_y", "org/" + "a" * 96, "nvidia/Llama-3.1-Nemotron-70B-Instruct-HF", "Qwen/Qwen2-0.5B"]


@pytest.mark.parametrize("value", INVALID_HUB_IDS)
def test_invalid_hub_ids(in_tmp: Path, value: str) -> None:
    assert hub_id_problem(value) is not None
    assert not is_hub_id(value)
    # With a safe org in front, a lax validator would trust it: it must not.
    for candidate in (value, value.replace("org", SAFE_ORG)):
        assert hub_id_problem(candidate) is not None
        assert is_safe_repo(candidate, None) is False, candidate


@pytest.mark.parametrize("value", VALID_HUB_IDS)
def test_valid_hub_ids(value: str) -> None:
    assert hub_id_problem(value) is None and is_hub_id(value)


def _hf_accepts(value: str) -> bool:
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return value.count("/") == 1


HUB_ALPHABET = string.ascii_letters[:6] + string.digits[:3] + "-_./\\:~ é"


@given(st.text(alphabet=HUB_ALPHABET, max_size=12) | st.text(max_size=12))
def test_validator_agrees_with_huggingface_hub(value: str) -> None:
    assert (hub_id_problem(value) is None) == _hf_accepts(value)


def hub_ids(*, max_part: int = 10) -> st.SearchStrategy[str]:
    """Valid ``org/name`` Hub IDs (checked by huggingface_hub's own validator)."""
    edge = st.sampled_from(string.ascii_letters + string.digits + "_")
    inner = st.text(alphabet=string.ascii_letters + string.digits + "_-.", max_size=max_part)
    part = st.builds(lambda a, m, b: a + m + b, edge, inner, edge) | edge
    return st.builds(lambda o, n: f"{o}/{n}", part, part).filter(_hf_accepts)


def near_hub_ids(*, max_part: int = 10) -> st.SearchStrategy[str]:
    """Strings that start like a safe (or unsafe) org's Hub ID, then anything."""
    orgs = st.sampled_from(sorted(SAFE_REPOS) + ["QWEN", "nvidia-evil", "evil", "Nvidia"])
    tails = st.text(alphabet=HUB_ALPHABET + "/", max_size=max_part)
    return st.builds(lambda o, t: f"{o}/{t}", orgs, tails)


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40) | near_hub_ids() | hub_ids())
def test_fuzz_never_raises_never_trusts_beyond_policy(empty_cwd: Path, value: str) -> None:
    trusted = is_safe_repo(value, None)
    expected = _hf_accepts(value) and value.split("/")[0].lower() in _SAFE_LOWER and not os.path.lexists(value)
    assert trusted is expected
    assert is_safe_repo(value, True) is True and is_safe_repo(value, False) is False


@given(hub_ids(), st.sampled_from([SHA, "main-ref"]), st.sampled_from(["", "/sub", "/"]))
def test_cache_path_inverts_hf_cache_folder_name(hub_id: str, revision: str, tail: str) -> None:
    folder = "models--" + hub_id.replace("/", "--")  # huggingface_hub's repo_folder_name
    assert hub_id_from_cache_path(f"/home/u/.cache/huggingface/hub/{folder}/snapshots/{revision}{tail}") == hub_id
    windows = f"C:\\Users\\u\\.cache\\huggingface\\hub\\{folder}\\snapshots\\{revision}"
    assert hub_id_from_cache_path(windows) == hub_id
    assert hub_id_from_cache_path(Path("/c") / folder / "snapshots" / revision) == hub_id


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/c/models--Qwen--Qwen2-0.5B/snapshots/abc", "Qwen/Qwen2-0.5B"),
        ("rel/models--gpt2/snapshots/abc", "gpt2"),
        ("/c/models--Qwen--Qwen2-0.5B/snapshots", None),
        ("/c/models--Qwen--Qwen2-0.5B/blobs/abc", None),
        ("/c/datasets--org--name/snapshots/abc", None),
        ("/c/models--a--b--c/snapshots/abc", None),
        ("/c/models---a--b/snapshots/abc", None),
        ("/c/models--Qwen--Qwen2-0.5B/snapshots/..", None),
        ("/c/Qwen/Qwen2-0.5B", None),
        ("Qwen/Qwen2-0.5B", None),
        ("", None),
    ],
)
def test_hub_id_from_cache_path(path: str, expected: str | None) -> None:
    assert hub_id_from_cache_path(path) == expected


@pytest.mark.parametrize("bad", ["false", 1, 0, "True"])
def test_non_bool_trust_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="trust_remote_code must be True, False or None"):
        is_safe_repo("nvidia/model", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, 3, ["nvidia/model"]])
def test_non_path_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="hf_path must be"):
        is_safe_repo(bad, None)


# --- require_trust messages and auto_map parsing -----------------------------------------


def test_require_trust_names_classes_and_files_and_runs_nothing(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    ckpt = make_custom_checkpoint(tmp_path / "ckpt", sentinel=sentinel)
    (ckpt / "helpers_extra.py").write_text("x = 1\n")
    config = json.loads((ckpt / "config.json").read_text())
    assert needs_remote_code(config)
    files = remote_code_files(ckpt, config)
    assert files == [str(ckpt / "configuration_tiny_gpt.py"), str(ckpt / "modeling_tiny_gpt.py")]
    with pytest.raises(TrustRemoteCodeError) as info:
        require_trust(str(ckpt), None, what="the model class TinyGPTForCausalLM")
    message = str(info.value)
    assert "the model class TinyGPTForCausalLM" in message
    assert "AutoConfig -> configuration_tiny_gpt.TinyGPTConfig" in message
    assert "AutoModelForCausalLM -> modeling_tiny_gpt.TinyGPTForCausalLM" in message
    for name in ("configuration_tiny_gpt.py", "modeling_tiny_gpt.py", "helpers_extra.py"):
        assert str(ckpt.absolute() / name) in message
    assert "local paths are never trusted implicitly" in message
    assert "cache snapshot" not in message
    require_trust(str(ckpt), True, what="the model")
    assert not sentinel.exists()  # deciding and explaining never imported the checkpoint code


@pytest.mark.parametrize(("org", "status"), [("Qwen", "is in SAFE_REPOS"), (UNSAFE_ORG, "not in SAFE_REPOS")])
@pytest.mark.parametrize("via_symlink", [False, True])
def test_cache_snapshot_error_suggests_hub_id(tmp_path: Path, org: str, status: str, via_symlink: bool) -> None:
    repo = tmp_path / "hub" / f"models--{org}--Qwen2-0.5B"
    snap = make_custom_checkpoint(repo / "snapshots" / SHA, sentinel=tmp_path / "s")
    # The real cache layout: snapshot files are symlinks to ../../blobs/<hash>.
    (repo / "blobs").mkdir()
    (snap / "config.json").rename(repo / "blobs" / "cfg")
    (snap / "config.json").symlink_to(Path("..", "..", "blobs", "cfg"))
    path = snap
    if via_symlink:
        path = tmp_path / "my-model"
        path.symlink_to(snap, target_is_directory=True)
    with pytest.raises(TrustRemoteCodeError) as info:
        require_trust(str(path), None, what="the model")
    message = str(info.value)
    assert f"cache snapshot of the Hub repository '{org}/Qwen2-0.5B'" in message
    assert f"hf_path='{org}/Qwen2-0.5B'" in message and status in message
    assert "AutoModelForCausalLM -> modeling_tiny_gpt.TinyGPTForCausalLM" in message


def test_config_outside_directory_is_not_read(tmp_path: Path) -> None:
    ckpt = make_custom_checkpoint(tmp_path / "ckpt", sentinel=tmp_path / "s")
    (ckpt / "config.json").rename(tmp_path / "outside.json")
    (ckpt / "config.json").symlink_to(tmp_path / "outside.json")
    with pytest.raises(TrustRemoteCodeError) as info:
        require_trust(str(ckpt), None, what="the model")
    assert "auto_map" not in str(info.value)  # the message is built without following the link
    assert str(ckpt.absolute() / "modeling_tiny_gpt.py") in str(info.value)  # still listed by name


def test_hub_id_refusal_lists_hub_urls(in_tmp: Path) -> None:
    config = {"auto_map": {"AutoModel": "modeling_x.XModel"}}
    with pytest.raises(TrustRemoteCodeError) as info:
        require_trust(f"{UNSAFE_ORG}/model", None, what="the model", config=config)
    message = str(info.value)
    assert f"https://huggingface.co/{UNSAFE_ORG}/model/blob/main/modeling_x.py" in message
    assert f"its org '{UNSAFE_ORG}' is not in SAFE_REPOS" in message
    with pytest.raises(TrustRemoteCodeError, match="trust_remote_code=False was passed explicitly"):
        require_trust(f"{SAFE_ORG}/model", False, what="the model", config=config)


@pytest.mark.parametrize(("ref_org", "trusted"), [(UNSAFE_ORG, False), ("Qwen", True)])
def test_code_from_another_repo_must_be_trusted_too(in_tmp: Path, ref_org: str, trusted: bool) -> None:
    config = {"auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModel": f"{ref_org}/code--modeling_x.XModel"}}
    assert remote_code_files("ckpt", config)[1] == f"https://huggingface.co/{ref_org}/code/blob/main/modeling_x.py"
    if trusted:
        require_trust(f"{SAFE_ORG}/model", None, what="the model", config=config)
    else:
        with pytest.raises(TrustRemoteCodeError, match=f"another repository, '{ref_org}/code'"):
            require_trust(f"{SAFE_ORG}/model", None, what="the model", config=config)
    require_trust(f"{SAFE_ORG}/model", True, what="the model", config=config)


@pytest.mark.parametrize(
    ("config", "needed"),
    [({}, False), ({"auto_map": {}}, False), ({"auto_map": None}, False),
     ({"auto_map": {"AutoModel": "m.C"}}, True), ({"auto_map": "m.C"}, True), ({"auto_map": ["m.C"]}, True)],
)
def test_needs_remote_code(config: dict, needed: bool) -> None:
    assert needs_remote_code(config) is needed


def test_remote_code_files_dedup_lists_and_nulls() -> None:
    config = {
        "auto_map": {
            "AutoConfig": "configuration_x.XConfig",
            "AutoModel": "modeling_x.XModel",
            "AutoModelForCausalLM": "modeling_x.XForCausalLM",
            "AutoTokenizer": ["tokenization_x.XTokenizer", None],
        }
    }
    assert remote_code_files("/ck", config) == ["/ck/configuration_x.py", "/ck/modeling_x.py", "/ck/tokenization_x.py"]
    assert [r.auto_class for r in code_references(config)] == ["AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoTokenizer"]


@pytest.mark.parametrize(
    "ref", ["modeling", "a.b.C", "../x.C", "a/b.C", "x--y--z.C", "modeling.", ".C", "bad org/r--m.C", 3, "m\x00.C"]
)
def test_malformed_auto_map_is_a_checkpoint_error(in_tmp: Path, ref: object) -> None:
    config = {"auto_map": {"AutoModel": ref}}
    assert needs_remote_code(config)
    with pytest.raises(CheckpointError, match="is malformed"):
        remote_code_files("/ck", config)
    # Still refused (fail closed), with the reason in the message, even from a safe org.
    with pytest.raises(TrustRemoteCodeError, match="is malformed"):
        require_trust(f"{UNSAFE_ORG}/model", None, what="the model", config=config)
    with pytest.raises(CheckpointError, match="must be an object"):
        code_references({"auto_map": ["m.C"]})
