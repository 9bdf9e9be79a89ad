"""harness.pyfacts: what ast sees in one file (dataclass pseudo-fields, field(...), signatures)."""

from __future__ import annotations

import pytest

from harness.pyfacts import file_facts

SOURCE = b'''
import dataclasses
import typing
from dataclasses import InitVar, KW_ONLY, dataclass, field
from typing import ClassVar, Optional

try:
    from megatron.core.fancy import Fancy
except ImportError:
    Fancy = None


@dataclass
class Config:
    """Docstring."""

    NAME: ClassVar[str] = "x"
    OTHER: typing.ClassVar = 3
    QUOTED: "ClassVar[int]" = 4
    seed: InitVar[int] = 0
    seed2: dataclasses.InitVar[int] = 0
    size: int = 4
    """The size."""
    items: list = field(default_factory=list, metadata={"argparse_meta": {"default": None}})
    name: Optional[str] = field(default=None, metadata={"help": "n"})
    hidden: int = field(default=1, init=False)
    required: float
    plain_attr = 5
    _: KW_ONLY
    late: int = 2

    def __init_subclass__(cls): ...

    def method(self, a, /, b: int = 1, *args, c, d=2, **kw): ...


class NotADataclass(Config):
    extra: int = 3


def top(x, y=3): ...
'''


@pytest.fixture(scope="module")
def facts():
    return file_facts(SOURCE)


def test_pseudo_fields_are_not_fields(facts):
    cls = facts["classes"]["Config"]
    names = [f["name"] for f in cls["fields"]]
    assert names == ["size", "items", "name", "hidden", "required", "late"]
    assert cls["class_vars"] == ["NAME", "OTHER", "QUOTED"]
    assert cls["init_vars"] == ["seed", "seed2"]


def test_field_call_default_factory_metadata(facts):
    fields = {f["name"]: f for f in facts["classes"]["Config"]["fields"]}
    assert fields["size"]["default"] == "4" and fields["size"]["doc"] == "The size."
    assert fields["items"]["default"] is None and fields["items"]["default_factory"] == "list"
    assert fields["items"]["metadata"] == {"argparse_meta": {"default": None}}
    assert fields["name"]["default"] == "None" and fields["name"]["type"] == "Optional[str]"
    assert fields["hidden"]["init"] is False
    assert fields["required"]["required"] is True and fields["required"]["default"] is None
    assert fields["late"]["kw_only"] is True and fields["size"]["kw_only"] is False


def test_dataclass_flag_and_bases(facts):
    assert facts["classes"]["Config"]["dataclass"] is True
    assert facts["classes"]["NotADataclass"]["dataclass"] is False
    assert facts["classes"]["NotADataclass"]["bases"] == ["Config"]


def test_signatures(facts):
    params = facts["classes"]["Config"]["methods"]["method"]
    assert [(p["name"], p["kind"], p["default"]) for p in params] == [
        ("self", "positional_only", None), ("a", "positional_only", None),
        ("b", "positional_or_keyword", "1"), ("args", "var_positional", None),
        ("c", "keyword_only", None), ("d", "keyword_only", "2"), ("kw", "var_keyword", None),
    ]
    assert [p["name"] for p in facts["functions"]["top"]] == ["x", "y"]


def test_guarded_imports_are_seen(facts):
    assert facts["imports"]["Fancy"] == [0, "megatron.core.fancy", "Fancy"]
    assert facts["imports"]["dataclasses"] == [0, "dataclasses", None]


def test_syntax_error_raises():
    with pytest.raises(SyntaxError):
        file_facts(b"class X(:\n")


DEPRECATIONS = b'''
import warnings
from typing_extensions import deprecated


class Announced:
    def __init__(self):
        log_single_rank(logger, logging.WARNING, "Announced IS DEPRECATED. Only critical fixes, "
                        "please use Other")

    def forward(self, inference_params=None):
        warnings.warn("inference_params is deprecated")


class ParameterOnly:
    def __init__(self, old=None):
        if old is not None:
            warnings.warn("old is deprecated; ParameterOnly takes new")


class OnlyInForward:
    def forward(self):
        warnings.warn("OnlyInForward is deprecated")


@deprecated("Decorated has been deprecated: use Other")
class Decorated:
    pass


class Mamba:
    def __init__(self):
        warnings.warn("Mamba has been deprecated. Use Hybrid instead.", DeprecationWarning)
'''


def test_a_class_announcing_its_own_deprecation():
    classes = file_facts(DEPRECATIONS)["classes"]
    assert classes["Announced"]["deprecation"] == "Announced IS DEPRECATED. Only critical fixes, please use Other"
    assert classes["Decorated"]["deprecation"] == "Decorated has been deprecated: use Other"
    assert classes["Mamba"]["deprecation"] == "Mamba has been deprecated. Use Hybrid instead."
    # a parameter's deprecation, or a notice outside construction, says nothing about the class
    assert classes["ParameterOnly"]["deprecation"] is None
    assert classes["OnlyInForward"]["deprecation"] is None
