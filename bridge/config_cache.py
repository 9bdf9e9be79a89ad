"""Resolved HF configs cached on disk, so the offline conversions start without transformers' config machinery.

The first time a checkpoint's ``config.json`` is resolved through ``AutoConfig`` (the offline paths ask for it:
``AutoBridge.from_hf_pretrained(..., config_cache=True)``), its :func:`~bridge.resolved_config.snapshot` is stored
under ``<cache root>/hf-configs/`` (the root is :func:`bridge.user_cache.default_cache_dir`); later runs get a
:class:`~bridge.resolved_config.ResolvedConfig` with the same attribute values and never import transformers.
The key is everything the resolved config can depend on:

* the bytes of ``config.json`` and of every ``*.py`` file beside it (a custom-code checkpoint's classes);
* the installed transformers: its version and where it is imported from (found without importing it);
* this project's version and the snapshot code itself (:data:`~bridge.resolved_config.SNAPSHOT_FORMAT` and the
  hash of ``bridge/resolved_config.py``), so a changed snapshot is a miss, never a misread.

``$MCORE_COMPAT_CONFIG_CACHE=off`` (or ``0``/``no``/``false``) turns it off; a path there relocates it (else it
moves with ``$MCORE_COMPAT_CACHE``). Entries are written atomically (a temporary file renamed into place); a
damaged or unreadable entry is a miss (logged at DEBUG) and is written again. The cache never changes a
result: a :class:`~bridge.resolved_config.ResolvedConfig` answers every attribute read as the real config does,
and :func:`with_real_config` redoes the work on the real config if something asks for more.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bridge import resolved_config
from bridge._logging import get_logger
from bridge.resolved_config import CachedConfigGap, ResolvedConfig, Unsnapshottable, snapshot
from bridge.user_cache import atomic_write_text, default_cache_dir

__all__ = ["CONFIG_CACHE_ENV", "CachedEntry", "cache_dir", "cache_key", "lookup", "native_model_type", "store",
           "transformers_config", "with_real_config"]

log = get_logger("config_cache")

CONFIG_CACHE_ENV = "MCORE_COMPAT_CONFIG_CACHE"
_OFF = {"0", "off", "no", "false"}
T = TypeVar("T")


def cache_dir() -> Path | None:
    """Where entries live, or None when ``$MCORE_COMPAT_CONFIG_CACHE`` turns the cache off."""
    value = os.environ.get(CONFIG_CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    return Path(value).expanduser() if value else default_cache_dir() / "hf-configs"


def _transformers_identity() -> dict[str, str]:
    """The transformers a ``from transformers import ...`` would import now: version and location (no import)."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or spec.origin is None:
        return {"transformers": "absent"}
    try:
        version = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"transformers": version, "transformers_origin": str(Path(spec.origin).resolve())}


def _project_identity() -> dict[str, str]:
    try:
        version = importlib.metadata.version("mcore-compat")
    except importlib.metadata.PackageNotFoundError:
        version = "source"
    code = Path(resolved_config.__file__).read_bytes()
    return {"project": version, "snapshot_format": str(resolved_config.SNAPSHOT_FORMAT),
            "snapshot_code": hashlib.sha256(code).hexdigest(), "python": f"{sys.version_info[0]}.{sys.version_info[1]}"}


def cache_key(config_dir: Path) -> str:
    """SHA-256 over ``config.json``, the ``*.py`` files beside it, transformers' and this project's identity."""
    digest = hashlib.sha256()
    parts: dict[str, Any] = {**_transformers_identity(), **_project_identity()}
    files = [config_dir / "config.json", *sorted(config_dir.glob("*.py"))]
    parts["files"] = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    digest.update(json.dumps(parts, sort_keys=True).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedEntry:
    """A stored resolution: the config, and whether transformers knows its ``model_type`` natively (what
    ``AutoBridge.from_hf_pretrained``'s trust policy asks before a custom-code config is loaded)."""

    config: ResolvedConfig
    native_model_type: bool


def _entry_path(root: Path, key: str) -> Path:
    return root / key[:2] / f"{key}.json"


def lookup(config_dir: Path) -> CachedEntry | None:
    """The cached entry for the config in ``config_dir``, or None (cache off, no entry, a damaged one)."""
    root = cache_dir()
    if root is None:
        return None
    try:
        key = cache_key(config_dir)
    except OSError as exc:
        log.debug("config cache: cannot read %s (%s); not cached", config_dir, exc)
        return None
    path = _entry_path(root, key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("key") != key or not isinstance(data.get("native_model_type"), bool):
            raise ValueError("the entry is for another key or lacks native_model_type")
        entry = CachedEntry(ResolvedConfig(data["snapshot"]), data["native_model_type"])
    except FileNotFoundError:
        log.debug("config cache: miss for %s (%s)", config_dir, key[:12])
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.debug("config cache: damaged entry %s (%s: %s); treated as a miss", path, type(exc).__name__, exc)
        return None
    log.debug("config cache: hit for %s (%s)", config_dir, key[:12])
    return entry


def store(config_dir: Path, config: Any, *, native_model_type: bool) -> Path | None:
    """Store ``config`` (resolved by transformers from ``config_dir``); the entry's path, or None when the cache is
    off, the config holds values a snapshot cannot represent, or the cache cannot be written (never an error)."""
    root = cache_dir()
    if root is None:
        return None
    try:
        key = cache_key(config_dir)
        data = {"key": key, "native_model_type": bool(native_model_type), "snapshot": snapshot(config)}
        path = _entry_path(root, key)
        atomic_write_text(path, json.dumps(data, sort_keys=True, allow_nan=True))
    except Unsnapshottable as exc:
        log.debug("config cache: %s not cached: %s", config_dir, exc)
        return None
    except OSError as exc:
        log.debug("config cache: cannot write an entry for %s (%s)", config_dir, exc)
        return None
    log.debug("config cache: stored %s as %s", config_dir, path)
    return path


def with_real_config(auto: Any, work: Callable[[Any], T]) -> T:
    """``work(auto)``; if it reads from a cached config what only the real one holds
    (:class:`~bridge.resolved_config.CachedConfigGap`), ``auto.hf_config`` is replaced by the real config and the
    work done again (it must not have written anything before it reads the config)."""
    try:
        return work(auto)
    except CachedConfigGap as gap:
        if not isinstance(auto.hf_config, ResolvedConfig):
            raise
        log.debug("config cache: %s; loading the real config", gap)
        auto.hf_config = auto.load_real_config()
        return work(auto)


def transformers_config(path: Path, use_code: bool, kwargs: dict[str, Any]) -> Any:
    """The real config of the checkpoint in ``path``: ``AutoConfig.from_pretrained`` (what the cache stands in for)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path), trust_remote_code=use_code, **kwargs)


def native_model_type(model_type: str | None) -> bool:
    """Whether transformers itself knows ``model_type`` (then no custom config code is needed)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES

