"""The Megatron-LM argument table: current, complete, and derived by Megatron-LM's flag rules."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config.argtable import (
    ConfigField,
    bridge_field,
    cli_flags,
    mcore_root,
    mcore_version,
    parse_config_class,
    render_table,
)

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "megatron-lm-to-bridge.md"


def _field(name: str, type_: str, default: str, **meta) -> ConfigField:
    return ConfigField(name, type_, default, "", meta, "X")


def test_committed_table_is_current() -> None:
    """Regenerate with: .venv/bin/python scripts/gen_args_table.py"""
    assert DOC.read_text() == render_table(), "docs/megatron-lm-to-bridge.md is stale; run scripts/gen_args_table.py"


def test_generator_script_check_mode_agrees() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_args_table.py"), "--check"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_ast_parse_finds_exactly_the_runtime_fields() -> None:
    """What ast reads from the sources is what the imported dataclass has (inheritance included)."""
    from megatron.core.model_parallel_config import ModelParallelConfig
    from megatron.core.transformer.transformer_config import TransformerConfig

    root = mcore_root()
    mpc = parse_config_class(root / "model_parallel_config.py", "ModelParallelConfig")
    tc = parse_config_class(root / "transformer" / "transformer_config.py", "TransformerConfig")
    runtime_tc = {f.name for f in dataclasses.fields(TransformerConfig) if f.init}
    assert {f.name for f in mpc} == {f.name for f in dataclasses.fields(ModelParallelConfig) if f.init}
    assert {f.name for f in mpc} | {f.name for f in tc} == runtime_tc
    from megatron.core import package_info

    assert mcore_version(root) == package_info.__version__
    table = DOC.read_text()
    for name in runtime_tc:
        assert f"`{bridge_field(name)}`" in table, name


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("num_layers", ["--num-layers"]),  # plain: -- + name with - for _
        ("layernorm_epsilon", ["--norm-epsilon"]),  # argparse_meta arg_names override
        ("add_bias_linear", ["--disable-bias-linear"]),  # override of a True bool
        ("perform_initialization", ["--no-initialization"]),
        ("attention_softmax_in_fp32", ["--no-attention-softmax-in-fp32", "--disable-attention-softmax-in-fp32"]),
        ("sequence_parallel", ["--sequence-parallel"]),  # False bool: store_true
        ("num_query_groups", ["--num-query-groups"]),  # Optional[int]
        ("activation_func", []),  # a callable has no flag
        ("params_dtype", []),  # a dtype has no flag
    ],
)
def test_real_fields_get_megatron_lm_flags(name: str, flags: list[str]) -> None:
    root = mcore_root()
    every = parse_config_class(root / "model_parallel_config.py", "ModelParallelConfig") + \
        parse_config_class(root / "transformer" / "transformer_config.py", "TransformerConfig")
    f = next(x for x in every if x.name == name)
    assert cli_flags(f) == flags
    expected_row_start = "| " + (", ".join(f"`{x}`" for x in flags) if flags else "— (not a command-line argument)")
    assert any(line.startswith(expected_row_start) and f"`{bridge_field(name)}`" in line
               for line in DOC.read_text().splitlines())


def test_flag_rules() -> None:
    assert cli_flags(_field("use_x", "bool", "False")) == ["--use-x"]
    assert cli_flags(_field("use_x", "bool", "True")) == ["--no-use-x", "--disable-use-x"]
    assert cli_flags(_field("use_x", "Optional[bool]", "None")) == ["--use-x"]
    assert cli_flags(_field("sizes", "list[int]", "None")) == ["--sizes"]
    assert cli_flags(_field("kind", "Literal['a', 'b']", "'a'")) == ["--kind"]
    assert cli_flags(_field("backend", "AttnBackend", "AttnBackend.auto"), frozenset({"AttnBackend"})) == ["--backend"]
    assert cli_flags(_field("backend", "AttnBackend", "AttnBackend.auto")) == []
    assert cli_flags(_field("pair", "Tuple[int, int]", "None")) == []
    assert cli_flags(_field("either", "Union[int, List[int]]", "1")) == []
    assert cli_flags(_field("either", "Union[int, List[int]]", "1", type="int")) == ["--either"]
    assert cli_flags(_field("x", "Callable", "f", arg_names=["--y", "--z"])) == ["--y", "--z"]


def test_bridge_fields_point_at_sections() -> None:
    assert bridge_field("tensor_model_parallel_size") == "parallelism.tensor_model_parallel_size"
    assert bridge_field("recompute_granularity") == "model.recompute_granularity"


def test_descriptions_come_from_docstrings_or_comments(tmp_path: Path) -> None:
    src = tmp_path / "cfg.py"
    src.write_text(
        "from dataclasses import dataclass, field\n"
        "@dataclass\n"
        "class C:\n"
        "    ####\n"
        "    # banner\n"
        "    ####\n"
        "    a: int = 1\n"
        '    """Doc of a,\n    on two lines."""\n'
        "    # comment of b\n"
        "    b: bool = field(default=True, metadata={'argparse_meta': {'arg_names': ['--bee'], 'type': int}})\n"
        "    c: int = field(default=0, init=False)\n"
        "    d: list = field(default_factory=list)\n"
    )
    a, b, d = parse_config_class(src, "C")
    assert (a.name, a.description, a.default) == ("a", "Doc of a, on two lines.", "1")
    assert (b.description, b.argparse_meta, b.default) == ("comment of b", {"arg_names": ["--bee"], "type": "int"}, "True")
    assert (d.name, d.default) == ("d", "list()")
    with pytest.raises(LookupError, match="class D"):
        parse_config_class(src, "D")
