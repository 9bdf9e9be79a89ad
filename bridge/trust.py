"""When the bridge may run modelling code shipped inside a checkpoint (``trust_remote_code``).

The policy, in order:

1. An explicit ``trust_remote_code=True`` or ``False`` always wins.
2. With ``None``, only a *Hub ID* ``org/name`` whose ``org`` is in :data:`SAFE_REPOS` is trusted.
   Everything else is refused: local paths in any spelling (absolute, relative, ``~``, Windows
   drive or UNC, ``pathlib.Path`` / ``bytes`` objects, symlinks, HF cache snapshots) and any
   string that exists on disk, since ``transformers`` loads ``org/name`` from the local directory
   of that name when one exists, whatever the Hub holds.

Org names compare case-insensitively (ASCII): the Hub resolves repository IDs case-insensitively
(huggingface_hub issues #1453, #2090), so ``qwen/X`` fetches the ``Qwen`` org's files and no other
account can own a case variant of ``Qwen``. An exact comparison would refuse names that fetch the
very code we trust without refusing anything else.

Everything here reads strings and JSON only; nothing imports checkpoint code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge._logging import get_logger
from bridge.errors import CheckpointError, TrustRemoteCodeError

__all__ = [
    "SAFE_REPOS",
    "CodeReference",
    "TrustDecision",
    "code_references",
    "decide_trust",
    "hub_id_from_cache_path",
    "hub_id_problem",
    "is_hub_id",
    "is_safe_repo",
    "needs_remote_code",
    "remote_code_files",
    "require_trust",
]

_log = get_logger("trust")

#: Hub organisations whose repositories may run their own code without an explicit
#: ``trust_remote_code=True``. Each is the verified organisation of the publisher of a model
#: family this bridge converts, and several of those families ship ``auto_map`` code there
#: (Nemotron-H, DeepSeek-V2/V3, Phi-3, early Qwen). Trusting an org trusts every repository in
#: it, present and future: keep the set small and add an org only for a family the bridge
#: supports. Spelled as on the Hub; compared case-insensitively (see module docstring).
SAFE_REPOS: frozenset[str] = frozenset(
    {
        "nvidia",  # Megatron-Core's publisher; Nemotron checkpoints
        "meta-llama",  # Llama
        "Qwen",  # Qwen, Qwen2, Qwen3 (+ MoE)
        "mistralai",  # Mistral, Mixtral
        "google",  # Gemma
        "deepseek-ai",  # DeepSeek-V2/V3 (custom code)
        "microsoft",  # Phi (custom code in early Phi-3 releases)
    }
)

# One component of a Hub ID, as huggingface_hub's ``validate_repo_id`` accepts it: 1-96 ASCII
# letters, digits, ``_``, ``-``, ``.``, starting and ending with a letter, digit or ``_``.
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"(?P<org>{_HUB_PART})/(?P<name>{_HUB_PART})", re.ASCII)
_CACHE_REPO = re.compile(rf"models--(?P<org>{_HUB_PART})--(?P<name>{_HUB_PART})", re.ASCII)
_CACHE_REPO_NO_ORG = re.compile(rf"models--(?P<name>{_HUB_PART})", re.ASCII)
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:([\\/]|$)")
_MAX_CONFIG_BYTES = 4 * 1024 * 1024


def hub_id_problem(value: str) -> str | None:
    """Why ``value`` is not a Hub ID of the form ``org/name``, or ``None`` when it is one.

    The rules are those of ``huggingface_hub.utils.validate_repo_id`` plus "exactly one ``/``"
    (a name without an org has no org to trust).
    """
    if not value:
        return "it is empty"
    slashes = value.count("/")
    if slashes != 1:
        return f"it has {slashes} '/' (expected exactly one, as in 'org/name')"
    if "--" in value or ".." in value:
        return "it contains '--' or '..'"
    if value.endswith(".git"):
        return "it ends with '.git'"
    if _HUB_ID.fullmatch(value) is None:
        return (
            "each of org and name must be 1-96 ASCII letters, digits, '-', '_' or '.', "
            "not starting or ending with '-' or '.'"
        )
    return None


def is_hub_id(value: object) -> bool:
    """Whether ``value`` is a ``str`` that is a valid ``org/name`` Hub ID (syntax only)."""
    return isinstance(value, str) and hub_id_problem(value) is None


def _is_safe_org(org: str) -> bool:
    return org.lower() in {safe.lower() for safe in SAFE_REPOS}


def _local_syntax(value: str) -> str | None:
    """How ``value`` is spelled as a local path, or ``None`` when it is not obviously one."""
    if value.startswith(("\\\\", "//")):
        return "a UNC path"
    if _WINDOWS_DRIVE.match(value):
        return "a Windows drive path"
    if value.startswith(("/", "\\")):
        return "an absolute path"
    if value.startswith("~"):
        return "a home-relative path"
    if value in (".", "..") or value.startswith(("./", "../", ".\\", "..\\")):
        return "a relative path"
    if "\\" in value:
        return "a Windows path"
    return None


@dataclass(frozen=True)
class TrustDecision:
    """Outcome of the policy: whether checkpoint code may run, and why (for messages and logs)."""

    trusted: bool
    reason: str


def decide_trust(hf_path: object, trust_remote_code: bool | None) -> TrustDecision:
    """Apply the policy of this module to ``hf_path`` and return the decision with its reason.

    Raises:
        TypeError: ``trust_remote_code`` is not ``True``/``False``/``None`` (a truthy string such
            as ``"false"`` must not silently mean trust), or ``hf_path`` is not a ``str``,
            ``bytes`` or ``os.PathLike``.
    """
    if trust_remote_code is not None and not isinstance(trust_remote_code, bool):
        raise TypeError(
            f"trust_remote_code must be True, False or None; found {trust_remote_code!r} "
            f"({type(trust_remote_code).__name__}). Pass a bool."
        )
    if not isinstance(hf_path, (str, bytes, os.PathLike)):
        raise TypeError(
            f"hf_path must be a Hub ID string or a local path; found {type(hf_path).__name__}."
        )
    if trust_remote_code is True:
        return TrustDecision(True, "trust_remote_code=True was passed explicitly")
    if trust_remote_code is False:
        return TrustDecision(False, "trust_remote_code=False was passed explicitly")
    if not isinstance(hf_path, str):
        kind = "bytes" if isinstance(hf_path, bytes) else type(hf_path).__name__
        return TrustDecision(False, f"it is a local path ({kind} object); local paths are never trusted implicitly")
    syntax = _local_syntax(hf_path)
    if syntax is not None:
        return TrustDecision(False, f"it is {syntax}; local paths are never trusted implicitly")
    problem = hub_id_problem(hf_path)
    if problem is not None:
        return TrustDecision(False, f"it is not a Hub ID 'org/name': {problem}")
    if os.path.lexists(hf_path):
        return TrustDecision(
            False,
            f"it exists on disk relative to {os.getcwd()!r}, so it is a local path (transformers "
            "loads it instead of the Hub repository); local paths are never trusted implicitly",
        )
    org = hf_path.split("/", 1)[0]
    if _is_safe_org(org):
        return TrustDecision(True, f"it is a Hub ID of the org {org!r}, which is in SAFE_REPOS")
    return TrustDecision(False, f"its org {org!r} is not in SAFE_REPOS {sorted(SAFE_REPOS)}")


def is_safe_repo(hf_path: object, trust_remote_code: bool | None) -> bool:
    """Whether code shipped with ``hf_path`` may run; see :func:`decide_trust` for the rules."""
    return decide_trust(hf_path, trust_remote_code).trusted


def hub_id_from_cache_path(path: str | os.PathLike[str]) -> str | None:
    """The Hub ID a Hugging Face cache snapshot came from, or ``None`` for any other path.

    ``.../models--Qwen--Qwen2-0.5B/snapshots/<revision>[/subfolder]`` -> ``"Qwen/Qwen2-0.5B"``;
    a repository without an org (``models--gpt2``) gives ``"gpt2"``. Pure string parsing.
    """
    parts = [p for p in re.split(r"[\\/]", os.fspath(path)) if p]
    for i in range(len(parts) - 3, -1, -1):
        if parts[i + 1] != "snapshots" or parts[i + 2] in (".", ".."):
            continue
        match = _CACHE_REPO.fullmatch(parts[i])
        if match is not None:
            hub_id = f"{match['org']}/{match['name']}"
            return hub_id if hub_id_problem(hub_id) is None else None
        match = _CACHE_REPO_NO_ORG.fullmatch(parts[i])
        if match is not None and "--" not in parts[i][len("models--") :]:
            return match["name"]
    return None


@dataclass(frozen=True)
class CodeReference:
    """One ``auto_map`` entry: ``auto_class`` is served by ``class_name`` in ``module``.py of
    ``repo`` (``None``: the checkpoint's own repository or directory)."""

    auto_class: str
    repo: str | None
    module: str
    class_name: str


def needs_remote_code(config_dict: Mapping[str, Any]) -> bool:
    """Whether loading this ``config.json`` content through ``transformers`` runs checkpoint
    code, i.e. it has a non-empty ``auto_map`` (a malformed one counts: fail closed)."""
    return bool(config_dict.get("auto_map"))


def _parse_reference(auto_class: str, ref: object) -> CodeReference:
    text = ref if isinstance(ref, str) else ""
    repo, _, local = text.rpartition("--") if "--" in text else (None, "", text)
    module, dot, class_name = local.partition(".")
    bad_repo = repo is not None and hub_id_problem(repo if "/" in repo else f"x/{repo}") is not None
    if (
        not dot
        or not module
        or not class_name
        or "." in class_name
        or text.count("--") > 1
        or bad_repo
        or re.fullmatch(r"[A-Za-z0-9_\-]+", module) is None
    ):
        raise CheckpointError(
            f"config.json auto_map[{auto_class!r}] = {ref!r} is malformed: expected "
            "'module.ClassName' or 'org/repo--module.ClassName' with a plain module file name. "
            "Fix the checkpoint's config.json."
        )
    return CodeReference(auto_class, repo, module, class_name)


def code_references(config_dict: Mapping[str, Any]) -> list[CodeReference]:
    """The ``auto_map`` entries of ``config.json`` content, in file order.

    A value may be a list (tokenizers map ``[slow, fast]``; ``None`` means absent).

    Raises:
        CheckpointError: ``auto_map`` is not a mapping or an entry is not a class reference.
    """
    auto_map = config_dict.get("auto_map") or {}
    if not isinstance(auto_map, Mapping):
        raise CheckpointError(
            f"config.json auto_map must be an object mapping Auto classes to 'module.Class'; "
            f"found {type(auto_map).__name__}. Fix the checkpoint's config.json."
        )
    refs: list[CodeReference] = []
    for auto_class, value in auto_map.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        refs.extend(_parse_reference(str(auto_class), v) for v in values if v is not None)
    return refs


def _code_location(base: str, ref: CodeReference) -> str:
    if ref.repo is not None:
        return f"https://huggingface.co/{ref.repo}/blob/main/{ref.module}.py"
    return os.path.join(base, f"{ref.module}.py")


def remote_code_files(checkpoint_dir: str | os.PathLike[str], config_dict: Mapping[str, Any]) -> list[str]:
    """The ``.py`` files ``auto_map`` makes ``transformers`` run, without duplicates, in order.

    Files of the checkpoint are ``checkpoint_dir/<module>.py``; files of another repository
    (``org/repo--module.Class``) are given as their Hub URL. The files are not opened.
    """
    base = os.fspath(checkpoint_dir)
    return list(dict.fromkeys(_code_location(base, r) for r in code_references(config_dict)))


def _read_local_config(directory: str) -> Mapping[str, Any] | None:
    """``directory/config.json`` for an error message, or ``None``. Reads nothing outside the
    directory (or, for a cache snapshot, outside its repository folder, where blobs live)."""
    root = os.path.realpath(directory)
    real = os.path.realpath(os.path.join(root, "config.json"))
    if hub_id_from_cache_path(root) is not None:  # the repository folder, above snapshots/
        root = root[: root.rindex(os.sep + "snapshots" + os.sep)]
    try:
        if os.path.commonpath([real, root]) != root or not os.path.isfile(real):
            return None
        if os.path.getsize(real) > _MAX_CONFIG_BYTES:
            return None
        with open(real, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, Mapping) else None


def _source_description(hf_path: str | bytes | os.PathLike[str]) -> tuple[str, str | None]:
    """``(where the checkpoint's own code lives, its local directory or None)``."""
    text = os.fsdecode(hf_path)
    try:
        if os.path.isdir(text):
            return os.path.abspath(text), text
    except ValueError:  # e.g. an embedded NUL
        pass
    if is_hub_id(text):
        return f"https://huggingface.co/{text}/blob/main", None
    return text, None


def require_trust(
    hf_path: object,
    trust_remote_code: bool | None,
    *,
    what: str,
    config: Mapping[str, Any] | None = None,
) -> None:
    """Refuse, before it runs, custom code that the policy does not trust.

    Call it whenever loading ``what`` (e.g. ``"the model class TinyGPTForCausalLM"``) from
    ``hf_path`` would run checkpoint code. ``config`` is the ``config.json`` content when the
    caller has it; for a local directory it is otherwise read (JSON only) to name the files.
    With ``trust_remote_code=None`` every other repository that ``auto_map`` pulls code from
    (``org/repo--module.Class``) must pass the policy too.

    Raises:
        TrustRemoteCodeError: the code is not trusted; the message names the ``auto_map``
            classes and ``.py`` files, how to trust them, and for an HF cache snapshot the Hub
            ID it came from.
        TypeError: as :func:`decide_trust`.
    """
    decision = decide_trust(hf_path, trust_remote_code)
    location, directory = _source_description(hf_path)  # type: ignore[arg-type]
    if config is None and directory is not None:
        config = _read_local_config(directory)
    refs: list[CodeReference] = []
    malformed: str | None = None
    try:
        refs = code_references(config or {})
    except CheckpointError as exc:
        malformed = str(exc)
    if decision.trusted and trust_remote_code is None:
        for ref in refs:
            if ref.repo is not None and not is_safe_repo(ref.repo, None):
                decision = TrustDecision(
                    False,
                    f"auto_map[{ref.auto_class!r}] pulls code from another repository, "
                    f"{ref.repo!r}, whose org is not in SAFE_REPOS",
                )
                break
    if decision.trusted:
        _log.info("running custom code for %s from %r: %s", what, hf_path, decision.reason)
        return
    lines = [
        f"Loading {what} from {hf_path!r} needs custom code shipped with the checkpoint, "
        "which is not trusted."
    ]
    if refs:
        classes = ", ".join(f"{r.auto_class} -> {r.module}.{r.class_name}" for r in refs)
        lines.append(f"config.json auto_map: {classes}.")
    elif malformed is not None:
        lines.append(malformed)
    lines.append(
        "Expected: trust_remote_code=True, or trust_remote_code=None with a Hub ID 'org/name' "
        f"whose org is in SAFE_REPOS {sorted(SAFE_REPOS)}."
    )
    lines.append(f"Found: trust_remote_code={trust_remote_code}, and {decision.reason}.")
    lines.append(_fix_line(location, directory, refs))
    suggestion = _cache_suggestion(hf_path, directory)  # type: ignore[arg-type]
    if suggestion is not None:
        lines.append(suggestion)
    raise TrustRemoteCodeError("\n".join(lines))


def _fix_line(location: str, directory: str | None, refs: list[CodeReference]) -> str:
    files = list(dict.fromkeys(_code_location(location, r) for r in refs))
    if directory is not None:
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".py"))
        except OSError:
            names = []
        files += [p for p in (os.path.join(location, n) for n in names) if p not in files]
    if not files:
        return f"Fix: review the checkpoint's .py files at {location}, then pass trust_remote_code=True."
    return "Fix: review these files, then pass trust_remote_code=True: " + ", ".join(files) + "."


def _cache_suggestion(hf_path: str | bytes | os.PathLike[str], directory: str | None) -> str | None:
    hub_id = hub_id_from_cache_path(os.fsdecode(hf_path))
    if hub_id is None and directory is not None:
        hub_id = hub_id_from_cache_path(os.path.realpath(directory))
    if hub_id is None:
        return None
    org = hub_id.split("/", 1)[0] if "/" in hub_id else None
    status = (
        f"its org {org!r} is in SAFE_REPOS, so it would be trusted"
        if org is not None and _is_safe_org(org)
        else "its org is not in SAFE_REPOS, so trust_remote_code=True would still be needed"
    )
    return (
        f"This is a Hugging Face cache snapshot of the Hub repository {hub_id!r}: pass "
        f"hf_path={hub_id!r} instead, which is trusted implicitly only when its org is in "
        f"SAFE_REPOS ({status}), or pass trust_remote_code=True."
    )
