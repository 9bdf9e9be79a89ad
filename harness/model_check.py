"""Will *this* checkpoint run on MCore X? One model's exact needs, judged per revision.

:func:`model_needs` runs the bridge's provider on the checkpoint's config (no weights; custom code only
when trusted, through :meth:`bridge.AutoBridge.from_hf_pretrained` and its trust policy) and records the
checks it needs: the config class, every ``TransformerConfig`` field it sets to a value that needs the
field, the ``GPTModel`` arguments, layer-spec functions and modules. That needs torch and transformers
(seconds), so the result is cached by the config's bytes, the trust flag, the project version and the
bridge's source files: a warm ``mcore-compat check`` imports neither.

:func:`judge` decides one revision from two sources:

- the static scan (:class:`harness.introspect.Introspector`, cached): the model's checks, with the
  renames the compat layer translates (:func:`harness.verdicts.evaluate`);
- the committed matrix's probe results for the model's family: a variant that failed its probe
  blocks the model when the model needs every check that variant needs (a Llama-3.1 rope-scaling
  failure does not block a Llama-2; a failure of the base variant blocks every Llama).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cache import JsonCache, stable_hash
from harness.checks import parse_check
from harness.errors import HarnessError
from harness.introspect import Introspection
from harness.matrix import Matrix, tool_version
from harness.renames import KNOWN_RENAMES, RenameTable
from harness.requirements import Row
from harness.verdicts import evaluate
from harness.versions import DYNAMIC_RELEASES, version_key

__all__ = ["ModelNeeds", "RevisionAnswer", "failed_variants", "judge", "model_needs", "variant_checks"]

log = logging.getLogger("harness.model_check")

OLDEST_SUPPORTED = DYNAMIC_RELEASES[0]
"""The oldest release the bridge supports (and the probes run against)."""

NEEDS_VERSION = 1
"""Bump when the cached entry's shape or derivation changes."""


@dataclass(frozen=True)
class ModelNeeds:
    """What one checkpoint needs from MCore (JSON round-trips through :meth:`to_json`)."""

    model: str
    family: str
    architecture: str
    checks: tuple[str, ...]
    renames: tuple[tuple[str, str], ...] = ()
    cached: bool = False

    def row(self) -> Row:
        return Row(name=self.family, kind="model", description=f"{self.model} ({self.architecture})",
                   checks=tuple(parse_check(c) for c in self.checks), renames=self.renames)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "family": self.family, "architecture": self.architecture,
                "checks": list(self.checks), "renames": [list(p) for p in self.renames]}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, cached: bool = False) -> ModelNeeds:
        return cls(model=data["model"], family=data["family"], architecture=data["architecture"],
                   checks=tuple(data["checks"]), renames=tuple(tuple(p) for p in data.get("renames", [])),
                   cached=cached)


@dataclass(frozen=True)
class RevisionAnswer:
    """Whether the model runs at one revision, and what blocks it."""

    spec: str
    runs: bool
    blocked_by: tuple[str, ...] = ()
    static: str = ""
    notes: tuple[str, ...] = ()
    probes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"runs": self.runs, "blocked_by": list(self.blocked_by), "static": self.static,
                "probes": dict(self.probes), "notes": list(self.notes)}


def _bridge_fingerprint() -> list[tuple[str, int, int]]:
    """Size and mtime of every source file of the ``bridge`` package (found without importing it)."""
    spec = importlib.util.find_spec("bridge")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("the bridge package is not importable; install mcore-compat (pip install -e .)")
    root = Path(next(iter(spec.submodule_search_locations)))
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".py", ".json")):
                st = os.stat(os.path.join(dirpath, name))
                out.append((os.path.relpath(os.path.join(dirpath, name), root), st.st_size, st.st_mtime_ns))
    return out


def _local_config(source: str) -> bytes | None:
    """The bytes of a local checkpoint's ``config.json`` (None: not a local directory or config file)."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return (path / "config.json").read_bytes()
    if path.is_file() and path.name == "config.json":
        return path.read_bytes()
    return None


def _derive(source: str, trust_remote_code: bool | None) -> ModelNeeds:
    """Run the bridge's provider on the checkpoint's config (imports torch and transformers)."""
    from bridge import AutoBridge, BridgeError
    from bridge.requirements import GPT_MODEL_MODULE, provider_usage

    path = Path(source).expanduser()
    where = str(path.parent if path.is_file() else source)
    try:
        auto = AutoBridge.from_hf_pretrained(where, trust_remote_code=trust_remote_code)
        usage = provider_usage(auto.to_megatron_provider(load_weights=False))
    except BridgeError as exc:
        raise HarnessError(f"cannot derive what {source} needs: {exc}") from exc
    cls = usage.config_class
    checks = [f"class:{cls}"]
    checks += [f"field:{f}" if cls == "TransformerConfig" else f"field:{cls}.{f}" for f in sorted(usage.config_fields)]
    checks += [f"gpt_param:{p}" for p in sorted(usage.gpt_model_params)]
    checks += [f"layer_spec:{f}" for f in sorted(usage.layer_spec_functions)]
    checks += [f"module:{GPT_MODEL_MODULE}"]
    family_reqs = auto.bridge.requirements()
    renames = tuple(tuple(p) for r in family_reqs for p in r.renames)
    extra_modules = {m for r in family_reqs for m in r.modules} - {GPT_MODEL_MODULE}
    checks += [f"module:{m}" for m in sorted(extra_modules)]
    return ModelNeeds(model=source, family=auto.bridge.family or auto.bridge.architecture,
                      architecture=auto.bridge.architecture, checks=tuple(checks), renames=renames)


def model_needs(source: str, *, trust_remote_code: bool | None = None, cache_dir: Path | None = None
                ) -> ModelNeeds:
    """What the checkpoint at ``source`` (directory, its ``config.json``, or a Hub ID) needs from MCore.

    Local checkpoints are cached (see the module docstring); Hub IDs are resolved through the bridge
    each time (their config may move).

    Raises:
        HarnessError: no config, an architecture no bridge handles, or custom code that is not trusted.
    """
    text = _local_config(source)
    if text is None:
        return _derive(source, trust_remote_code)
    from harness.cache import default_cache_dir

    cache = JsonCache(cache_dir or default_cache_dir())
    key = stable_hash(["model-needs", NEEDS_VERSION, tool_version(), bool(trust_remote_code),
                       text.decode("utf-8", "replace"), _bridge_fingerprint()])
    hit = cache.get(key)
    if isinstance(hit, dict):
        return ModelNeeds.from_json({**hit, "model": source}, cached=True)
    needs = _derive(source, trust_remote_code)
    cache.put(key, needs.to_json())
    return needs


_VARIANT = re.compile(r"^(v\d+(?:\([^)]*\))?): (.*)$")


def failed_variants(details: str) -> dict[str, str]:
    """``{variant: why}`` of the variants a ``family:<f>`` probe reports as not ok (its details list each
    variant as ``NAME: ok, ...`` or ``NAME: <reason>``, separated by `` | ``)."""
    body = details.split(". ", 1)[1] if ". " in details.split(" | ")[0] else details
    out = {}
    for part in body.split(" | "):
        found = _VARIANT.match(part.strip())
        if found and not found.group(2).startswith("ok"):
            out[found.group(1)] = found.group(2)
    return out


def variant_checks(matrix: Matrix | None, family: str) -> dict[str, frozenset[str]]:
    """The checks of each variant of ``family``, as the matrix's row records them ({} when it does not)."""
    row = next((r for r in (matrix.rows if matrix else []) if r["name"] == family), None)
    return {name: frozenset(checks) for name, checks in ((row or {}).get("variants") or {}).items()}


def _probe_blockers(needs: ModelNeeds, cell: dict[str, Any] | None, variant_checks: dict[str, frozenset[str]]
                    ) -> tuple[list[str], dict[str, str], list[str]]:
    """``(blockers, {platform: probe status}, notes)`` from the family cell's probe results."""
    blockers: list[str] = []
    notes: list[str] = []
    statuses: dict[str, str] = {}
    wanted = set(needs.checks)
    for platform, dyn in sorted(((cell or {}).get("dynamic") or {}).items()):
        test = (dyn.get("tests") or {}).get(f"family:{needs.family}")
        if not test:
            continue
        status = str(test.get("status"))
        statuses[platform] = status
        if status in ("error", "timeout"):
            notes.append(f"the {platform} probe could not judge ({status}): {str(test.get('details'))[:200]}")
            continue
        if status != "failed":
            continue
        failed = failed_variants(str(test.get("details", "")))
        if not failed:
            blockers.append(f"probe family:{needs.family} failed on {platform}: {str(test.get('details'))[:300]}")
            continue
        for name, why in failed.items():
            own = variant_checks.get(name)
            if own is None or own <= wanted:  # unknown variant, or the model needs all it needs
                blockers.append(f"probe family:{needs.family} {name} failed on {platform}: {why[:300]}")
    return blockers, statuses, notes


def judge(needs: ModelNeeds, intro: Introspection, *, cell: dict[str, Any] | None = None,
          variant_checks: dict[str, frozenset[str]] | None = None) -> RevisionAnswer:
    """Whether the model runs at ``intro``'s revision: its static checks, then its family's probe results
    (``cell``: the family's matrix cell at this revision, when the matrix has one)."""
    spec = intro.revision.spec
    if intro.error:
        return RevisionAnswer(spec, False, (f"the revision could not be read: {intro.error}",), "error")
    verdict = evaluate(needs.row(), intro, RenameTable([*KNOWN_RENAMES]))
    blockers = list(verdict.missing)
    version = intro.revision.version
    if version and version_key(version) < version_key(OLDEST_SUPPORTED):
        blockers.append(f"megatron-core {version} is older than the bridge supports ({OLDEST_SUPPORTED} onward)")
    notes = [f"renamed here: {k} -> {v} (the compat layer translates it)" for k, v in verdict.renamed.items()]
    probe_blockers, probes, probe_notes = _probe_blockers(needs, cell, variant_checks or {})
    blockers += probe_blockers
    notes += probe_notes
    if cell is None:
        notes.append("no probe results for this revision in the matrix (static checks only)")
    runs = not blockers
    return RevisionAnswer(spec, runs, tuple(blockers), verdict.status, tuple(notes), probes)
