"""Static introspection of one revision: what its MCore API looks like, without importing it.

The result (:class:`Introspection`) holds every ``TransformerConfig`` field as the dataclass
exposes it at run time (own fields plus inherited ones, later declarations overriding
earlier ones, ``ClassVar``/``InitVar`` skipped), the config subclasses, ``GPTModel.__init__``
parameters, the layer-spec functions, which MCore modules exist, and the model classes
(:data:`MODEL_CLASS_PATHS`: ``GPTModel``, ``HybridModel``) with their constructor parameters and
any deprecation notice their source carries (0.19's ``GPTModel IS DEPRECATED``).

Per-file facts are cached by git blob id (see :mod:`harness.pyfacts`), so a second scan of
the same sources re-parses nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cache import JsonCache, default_cache_dir, stable_hash
from harness.classes import ClassResolver
from harness.errors import HarnessError, SourceError
from harness.pyfacts import FACTS_VERSION, file_facts
from harness.revisions import Revision, open_source, resolve_revision
from harness.sources import Source

__all__ = [
    "CONFIG_CLASS",
    "GPT_MODEL_PATH",
    "INTROSPECTOR_VERSION",
    "LAYER_SPECS_PATH",
    "MODEL_CLASSES",
    "MODEL_CLASS_PATHS",
    "MODULE_CHECKS",
    "TC_PATH",
    "Introspection",
    "Introspector",
]

log = logging.getLogger("harness.introspect")

INTROSPECTOR_VERSION = f"{FACTS_VERSION}.1"
_MEMO_SIZE = 256
TC_PATH = "megatron/core/transformer/transformer_config.py"
GPT_MODEL_PATH = "megatron/core/models/gpt/gpt_model.py"
LAYER_SPECS_PATH = "megatron/core/models/gpt/gpt_layer_specs.py"
CONFIG_CLASS = "TransformerConfig"
MODEL_CLASS_PATHS: dict[str, str] = {
    "GPTModel": GPT_MODEL_PATH,
    "HybridModel": "megatron/core/models/hybrid/hybrid_model.py",
}
"""The model classes a bridge builds, and the file each is defined in (the matrix's model-class verdicts)."""
MODEL_CLASSES: dict[str, str] = {"gpt": "GPTModel", "hybrid": "HybridModel"}
"""The bridge's ``model_class`` names (``bridge.compat.MODEL_CLASS_SOURCES``, kept in step by a test) -> class."""

MODULE_CHECKS: dict[str, str] = {
    "moe": "megatron.core.transformer.moe",
    "moe_grouped_gemm": "megatron.core.transformer.moe.experts",
    "mla": "megatron.core.transformer.multi_latent_attention",
    "mtp": "megatron.core.transformer.multi_token_prediction",
    "dist_checkpointing": "megatron.core.dist_checkpointing",
    "ssm": "megatron.core.ssm",
    "mamba_model": "megatron.core.models.mamba",
    "te_extensions": "megatron.core.extensions.transformer_engine",
    "te_custom_layers": "megatron.core.transformer.custom_layers.transformer_engine",
    "heterogeneous": "megatron.core.transformer.heterogeneous",
    "yarn_rope": "megatron.core.models.common.embeddings.yarn_rotary_pos_embedding",
    "torch_norm": "megatron.core.transformer.torch_norm",
    "inference": "megatron.core.inference",
    "fp8_utils": "megatron.core.fp8_utils",
    "multimodal": "megatron.core.models.multimodal",
    "hybrid_model": "megatron.core.models.hybrid",
    "resharding": "megatron.core.resharding",
}
"""Named module checks reported for every revision (any dotted module can be asked too)."""


@dataclass(frozen=True)
class Introspection:
    """The static API of one revision (JSON round-trips through :meth:`to_json`)."""

    revision: Revision
    transformer_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    subclasses: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    gpt_model_params: tuple[str, ...] = ()
    layer_specs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    modules: dict[str, bool] = field(default_factory=dict)
    module_index: frozenset[str] = frozenset()
    model_classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: str | None = None

    def config_fields(self, class_name: str = CONFIG_CLASS) -> dict[str, dict[str, Any]] | None:
        """Fields of ``TransformerConfig`` or of a subclass; None when the class is absent."""
        if class_name == CONFIG_CLASS:
            return self.transformer_config if self.transformer_config else None
        return self.subclasses.get(class_name)

    def has_module(self, dotted: str) -> bool:
        return dotted in self.module_index

    def model_class(self, name: str) -> dict[str, Any] | None:
        """``{"params": [...], "deprecation": str | None}`` of a model class (:data:`MODEL_CLASS_PATHS`);
        None when this revision does not define it."""
        return self.model_classes.get(name)

    def to_json(self, *, with_index: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "revision": self.revision.to_json(),
            "transformer_config": self.transformer_config,
            "subclasses": self.subclasses,
            "gpt_model_params": list(self.gpt_model_params),
            "layer_specs": {k: list(v) for k, v in self.layer_specs.items()},
            "modules": self.modules,
            "model_classes": self.model_classes,
            "notes": list(self.notes),
            "error": self.error,
        }
        if with_index:
            out["module_index"] = sorted(self.module_index)
        return out


def _module_path(relpath: str) -> str:
    return relpath.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _module_index(files: list[str]) -> frozenset[str]:
    out: set[str] = set()
    for rel in files:
        if not rel.endswith(".py"):
            continue
        parts = _module_path(rel).split(".")
        for i in range(1, len(parts) + 1):
            out.add(".".join(parts[:i]))
    return frozenset(out)


def _model_class(resolver: ClassResolver, path: str, name: str) -> dict[str, Any] | None:
    """Constructor parameters and deprecation notice of the model class ``name`` in ``path`` (None: absent)."""
    cls = resolver.cls((path, name))
    if cls is None:
        return None
    init = resolver.method_params(path, name, "__init__")
    return {"params": [p["name"] for p in (init or [])[1:]], "deprecation": cls.get("deprecation")}


class Introspector:
    """Introspects revisions, caching per-file facts under ``facts_dir/facts``.

    Args:
        cache_dir: the cache root for archives, worktrees and (by default) facts.
        facts_dir: a separate root for the facts cache (tests use a private one).
        use_cache: False re-parses every file (the benchmark's "no cache" baseline).
    """

    def __init__(self, cache_dir: Path | str | None = None, *, facts_dir: Path | str | None = None,
                 use_cache: bool = True) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.cache = JsonCache(Path(facts_dir) if facts_dir else self.cache_dir) if use_cache else None
        self._memo: dict[str, dict[str, Any]] = {}  # this process's facts, by key (bounded)

    # ---------------------------------------------------------------- per-file facts
    def facts(self, source: Source, relpath: str) -> dict[str, Any] | None:
        """Facts of one file (cached by blob id); None when the file is absent.

        Raises:
            SourceError: the file is not valid Python.
        """
        blob = source.blob_id(relpath)
        if blob is None:
            return None
        key = stable_hash(["facts", FACTS_VERSION, blob])
        hit = self._memo.get(key) if self.cache is not None else None
        if hit is None and self.cache is not None:
            hit = self.cache.get(key)
        if hit is None:
            data = source.read(relpath)
            assert data is not None
            try:
                hit = file_facts(data)
            except (SyntaxError, ValueError) as exc:  # cached too: a broken blob stays broken
                line = getattr(exc, "lineno", None)
                hit = {"parse_error": f"{f'line {line}: ' if line else ''}{exc.__class__.__name__}: {exc}"}
            if self.cache is not None:
                self.cache.put(key, hit)
        if self.cache is not None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = hit
        if "parse_error" in hit:
            raise SourceError(f"cannot parse {relpath} of {source.label} ({hit['parse_error']})")
        return hit

    def module_index(self, source: Source) -> frozenset[str]:
        tree = source.tree_id("megatron/core")
        key = stable_hash(["modules", INTROSPECTOR_VERSION, tree]) if tree else None
        if key and self.cache is not None:
            hit = self.cache.get(key)
            if isinstance(hit, list):
                return frozenset(hit)
        index = _module_index(source.list_files("megatron/core"))
        if key and self.cache is not None:
            self.cache.put(key, sorted(index))
        return index

    # ---------------------------------------------------------------- whole revision
    def config_fields(self, source: Source, class_name: str = CONFIG_CLASS) -> dict[str, dict[str, Any]] | None:
        """Run-time fields of a config class at ``source`` (None when the class is absent)."""
        resolver = ClassResolver(lambda rel: self.facts(source, rel))
        return resolver.dataclass_fields(TC_PATH, class_name)

    def introspect_source(self, source: Source, revision: Revision) -> Introspection:
        """Introspect an open source. Parse failures become ``error``, never exceptions."""
        try:
            return self._introspect(source, revision)
        except (SourceError, HarnessError) as exc:
            return Introspection(revision=revision, error=str(exc))

    def _introspect(self, source: Source, revision: Revision) -> Introspection:
        resolver = ClassResolver(lambda rel: self.facts(source, rel))
        notes: list[str] = []
        tc = resolver.dataclass_fields(TC_PATH, CONFIG_CLASS)
        if tc is None:
            notes.append(f"no class {CONFIG_CLASS} in {TC_PATH}")
        subclasses = {
            name: fields
            for name in resolver.subclasses_in(TC_PATH, CONFIG_CLASS)
            if (fields := resolver.dataclass_fields(TC_PATH, name)) is not None
        }
        init = resolver.method_params(GPT_MODEL_PATH, "GPTModel", "__init__")
        params = tuple(p["name"] for p in init[1:]) if init else ()
        if init is None:
            notes.append(f"no GPTModel.__init__ in {GPT_MODEL_PATH}")
        specs_facts = self.facts(source, LAYER_SPECS_PATH)
        layer_specs = {
            name: tuple(p["name"] for p in ps)
            for name, ps in (specs_facts or {}).get("functions", {}).items()
        }
        model_classes = {name: entry for name, path in MODEL_CLASS_PATHS.items()
                         if (entry := _model_class(resolver, path, name)) is not None}
        notes += resolver.notes
        index = self.module_index(source)
        modules = {name: dotted in index for name, dotted in MODULE_CHECKS.items()}
        return Introspection(
            revision=revision, transformer_config=tc or {}, subclasses=subclasses,
            gpt_model_params=params, layer_specs=layer_specs, modules=modules,
            module_index=index, model_classes=model_classes, notes=tuple(dict.fromkeys(notes)),
        )

    def introspect(self, spec: str | Revision, *, repo: str | None = None) -> Introspection:
        """Resolve, fetch and introspect one revision. Fetch/parse failures become ``error``.

        Raises:
            RevisionError: the spec is malformed or unknown (a usage error, not a cell).
        """
        revision = resolve_revision(spec, repo=repo, cache_dir=self.cache_dir)
        try:
            source = open_source(revision, cache_dir=self.cache_dir)
        except SourceError as exc:
            return Introspection(revision=revision, error=str(exc))
        with source:
            return self.introspect_source(source, revision)
