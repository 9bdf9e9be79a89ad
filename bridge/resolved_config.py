"""A transformers config, resolved once, as plain data: :func:`snapshot` and the :class:`ResolvedConfig` it rebuilds.

``AutoConfig.from_pretrained`` imports transformers' config machinery (about 2.7 s over ``import torch``: it
pulls ``torch.distributed.tensor`` and sympy in); the offline conversions need only the values. A snapshot holds
everything an attribute read can return from the real config object:

* ``instance``: the object's own attributes (``vars(config)``), which :class:`ResolvedConfig` keeps in its own
  ``__dict__`` (so ``vars()`` reads, as :func:`bridge.models.hf_config.torch_dtype` does, see the same);
* ``computed``: every other name an attribute read answers: the class's data attributes (``model_type``,
  ``attribute_map``...), its properties (``rope_scaling``, ``num_labels``...), evaluated once, and the
  ``attribute_map`` aliases, which win over everything as transformers' ``__getattribute__`` makes them;
* ``missing``: names whose property raises ``AttributeError`` (``getattr(config, name, None)`` gives None);
* ``opaque``: methods and values that are not plain data (classes, callables); reading one from a
  :class:`ResolvedConfig` raises :class:`CachedConfigGap` (never a silent default), and
  :func:`bridge.config_cache.family_of` then falls back to the real config;
* ``to_dict``: ``config.to_dict()`` (what ``MegatronModelBridge.export_config`` writes).

Values are encoded with tags (tuples, sets, dicts, torch dtypes and nested configs stay what they were), so a
decoded value compares equal to the original and has its type. A config holding an instance attribute that is
not plain data cannot be snapshotted (:class:`Unsnapshottable`; the caller keeps using transformers).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from bridge.errors import ConfigError

__all__ = ["SNAPSHOT_FORMAT", "CachedConfigGap", "ResolvedConfig", "Unsnapshottable", "decode", "encode", "snapshot"]

SNAPSHOT_FORMAT = 1
"""Version of :func:`snapshot`'s layout (part of :mod:`bridge.config_cache`'s key, with this file's hash)."""

_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64,
                                                      torch.int64, torch.int32, torch.int8, torch.uint8, torch.bool)}


class Unsnapshottable(Exception):
    """Internal: a value :func:`encode` cannot represent exactly (the config is then not cached)."""


class CachedConfigGap(ConfigError):
    """Something read from a :class:`ResolvedConfig` that only the real transformers config can answer."""


def encode(value: Any) -> Any:
    """``value`` as tagged JSON: plain scalars and lists as themselves, every other kind as a one-key object."""
    if value is None or isinstance(value, (bool, str)) or type(value) in (int, float):
        return value
    if type(value) is list:
        return [encode(v) for v in value]
    if type(value) is tuple:
        return {"tuple": [encode(v) for v in value]}
    if type(value) in (set, frozenset):
        items = list(value)
        if not all(isinstance(v, str) for v in items):
            raise Unsnapshottable(f"a set of {sorted({type(v).__name__ for v in items})}")
        return {type(value).__name__: sorted(items)}
    if type(value) is dict:
        if not all(isinstance(k, str) for k in value):
            # JSON keys are strings: int keys (id2label) keep their type as a list of pairs
            return {"pairs": [[encode(k), encode(v)] for k, v in value.items()]}
        return {"dict": {k: encode(v) for k, v in value.items()}}
    if isinstance(value, torch.dtype):
        name = str(value).removeprefix("torch.")
        if name not in _DTYPES:
            raise Unsnapshottable(f"dtype {value}")
        return {"dtype": name}
    if _is_config(value):
        return {"config": snapshot(value)}
    raise Unsnapshottable(f"a {type(value).__module__}.{type(value).__qualname__}")


def decode(data: Any) -> Any:
    """The value :func:`encode` encoded (raises ``ValueError`` on anything it never writes)."""
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict) and len(data) == 1:
        (tag, body), = data.items()
        if tag == "tuple":
            return tuple(decode(v) for v in body)
        if tag in ("set", "frozenset"):
            return (set if tag == "set" else frozenset)(body)
        if tag == "dict":
            return {k: decode(v) for k, v in body.items()}
        if tag == "pairs":
            return {decode(k): decode(v) for k, v in body}
        if tag == "dtype":
            return _DTYPES[body]
        if tag == "config":
            return ResolvedConfig(body)
    raise ValueError(f"not an encoded value: {data!r:.80}")


def _is_config(value: Any) -> bool:
    return any(c.__name__ == "PreTrainedConfig" and c.__module__ == "transformers.configuration_utils"
               for c in type(value).__mro__)


def _is_data_descriptor(raw: Any) -> bool:
    return hasattr(type(raw), "__set__") or hasattr(type(raw), "__delete__")


#: ``__getattribute__`` overrides whose behaviour :func:`snapshot` reproduces: transformers' ``attribute_map``
#: redirect, and its heterogeneous-config check (a pass-through unless the config has a ``_heterogeneity_spec``,
#: which is refused).
_KNOWN_LOOKUPS = {("transformers.configuration_utils", "PreTrainedConfig"),
                  ("transformers.integrations.heterogeneity.configuration_utils", "HeterogeneousConfigMixin")}


def _check_plain_lookup(config: Any) -> None:
    """Refuse a config whose attribute lookup could answer names :func:`snapshot` cannot list (a ``__getattr__``,
    a ``__getattribute__`` not in :data:`_KNOWN_LOOKUPS`, a heterogeneous config's per-layer checks)."""
    cls = type(config)
    for klass in cls.__mro__:
        if klass is object:
            continue
        if "__getattr__" in vars(klass):
            raise Unsnapshottable(f"{cls.__name__}: {klass.__name__} defines __getattr__")
        if "__getattribute__" in vars(klass) and (klass.__module__, klass.__name__) not in _KNOWN_LOOKUPS:
            raise Unsnapshottable(f"{cls.__name__}: {klass.__name__} defines __getattribute__")
    if "_heterogeneity_spec" in vars(config):
        raise Unsnapshottable(f"{cls.__name__} is a heterogeneous config (per-layer attributes)")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No deprecation notices while properties are read for the snapshot (``torch_dtype`` logs one)."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def snapshot(config: Any) -> dict[str, Any]:
    """Everything an attribute read of ``config`` (a transformers config) can return, as JSON-able data."""
    cls = type(config)
    out: dict[str, Any] = {"class": cls.__name__, "module": cls.__module__, "instance": {}, "computed": {},
                           "missing": [], "opaque": []}
    for name, value in vars(config).items():
        try:
            out["instance"][name] = encode(value)
        except Unsnapshottable as exc:
            raise Unsnapshottable(f"{cls.__name__}.{name} holds {exc}") from None
    _check_plain_lookup(config)
    aliases = dict(getattr(cls, "attribute_map", None) or {})
    names = {n for n in dir(cls) if not (n.startswith("__") and n.endswith("__"))} | set(aliases)
    with _quiet():
        for name in sorted(names):
            # the order transformers' lookup follows: attribute_map aliases, then data descriptors (properties),
            # then the instance's own attributes, then everything else on the class
            raw = None if name in aliases else inspect.getattr_static(cls, name, None)
            if name not in aliases and not _is_data_descriptor(raw) and name in out["instance"]:
                continue
            if inspect.isfunction(raw) or isinstance(raw, (staticmethod, classmethod)):
                out["opaque"].append(name)
                continue
            try:
                value = getattr(config, name)
            except AttributeError:
                out["missing"].append(name)
                continue
            except Exception:  # noqa: BLE001 - a property that fails is one more thing only transformers answers
                out["opaque"].append(name)
                continue
            try:
                if callable(value) and not _is_config(value):
                    raise Unsnapshottable("a callable")
                out["computed"][name] = encode(value)
            except Unsnapshottable:
                out["opaque"].append(name)
        try:
            out["to_dict"] = encode(config.to_dict())
        except Unsnapshottable as exc:
            raise Unsnapshottable(f"{cls.__name__}.to_dict() holds {exc}") from None
    return out


class ResolvedConfig:
    """A read-only stand-in for the transformers config a :func:`snapshot` was taken of: the same value for
    every attribute read, ``vars()`` the same, ``to_dict()`` the same; anything else raises
    :class:`CachedConfigGap`."""

    __slots__ = ("__dict__", "_snapshot", "_computed")

    def __init__(self, data: dict[str, Any]) -> None:
        try:
            instance = {k: decode(v) for k, v in data["instance"].items()}
            computed = {k: decode(v) for k, v in data["computed"].items()}
            missing, opaque = set(data["missing"]), set(data["opaque"])
            str(data["class"]), data["to_dict"]  # noqa: B018 - present
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a config snapshot ({type(exc).__name__}: {exc})") from None
        object.__setattr__(self, "_snapshot", data)
        object.__setattr__(self, "_computed", (computed, missing, opaque))
        self.__dict__.update(instance)

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") or name in ("to_dict", "_snapshot", "_computed"):
            return object.__getattribute__(self, name)
        computed, missing, opaque = object.__getattribute__(self, "_computed")
        if name in computed:
            return computed[name]
        if name in missing:
            raise AttributeError(name)
        if name in opaque:
            raise CachedConfigGap(
                f"{self!r}.{name} is a method or a value that is not plain data, which a cached config does not "
                "hold; the real transformers config is needed (bridge.config_cache falls back to it; to never use "
                "the cache, set MCORE_COMPAT_CONFIG_CACHE=off)"
            )
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise CachedConfigGap(f"{self!r} is read-only (a cached config); cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise CachedConfigGap(f"{self!r} is read-only (a cached config); cannot delete {name}")

    def __repr__(self) -> str:
        return f"ResolvedConfig({object.__getattribute__(self, '_snapshot')['class']})"

    def to_dict(self) -> dict[str, Any]:
        """``to_dict()`` of the real config (a fresh copy each call, as transformers returns)."""
        return decode(object.__getattribute__(self, "_snapshot")["to_dict"])
