"""Row verdicts, a test's status, and the capture of MCore's warnings (warnings.warn and logging)."""

from __future__ import annotations

import logging
import warnings

import pytest

from harness.probes.payload_common import (
    FAILED, PASSED, SKIPPED, MegatronWarnings, Outcome, Row, describe_exception, merge_warnings,
)


@pytest.mark.parametrize(("statuses", "expected"), [
    ((PASSED, PASSED), PASSED),
    ((PASSED, FAILED, SKIPPED), FAILED),
    ((SKIPPED, PASSED), PASSED),
    ((SKIPPED,), SKIPPED),
    ((), SKIPPED),
])
def test_a_test_fails_with_any_row_and_passes_with_one(statuses: tuple[str, ...], expected: str) -> None:
    outcome = Outcome({f"row{i}": Row(s, "why") for i, s in enumerate(statuses)})
    assert outcome.status == expected


def test_rows_refuse_unknown_statuses() -> None:
    with pytest.raises(AssertionError):
        Row("error", "not a payload status")


def _warn_from(filename: str, message: str, category: type[Warning] = DeprecationWarning, lineno: int = 7) -> None:
    warnings.warn_explicit(message, category, filename, lineno, module="x")


def test_only_megatrons_warnings_and_log_records_are_kept_once_each() -> None:
    with MegatronWarnings() as caught:
        for _ in range(3):  # the same warning from the same place: one entry
            _warn_from("/site/megatron/core/models/gpt/gpt_model.py", "GPTModel is deprecated")
        _warn_from("/site/megatron/core/transformer/utils.py", "fallback", UserWarning, 3)
        _warn_from("/site/torch/jit/_script.py", "torch's own deprecation")
        logging.getLogger("megatron.core.models.gpt.gpt_model").warning("GPTModel IS DEPRECATED (%s)", "0.19")
        logging.getLogger("megatron.core.utils").info("not a warning")
        logging.getLogger("transformers.modeling_utils").warning("not megatron")
    entries = caught.as_json()
    assert [(e["category"], e["message"]) for e in entries] == [
        ("DeprecationWarning", "GPTModel is deprecated"),
        ("UserWarning", "fallback"),
        ("log.WARNING", "GPTModel IS DEPRECATED (0.19)"),
    ]
    assert entries[0]["filename"] == "megatron/core/models/gpt/gpt_model.py" and entries[0]["lineno"] == 7
    assert entries[2]["filename"].endswith("test_payload_common.py")
    # the handler is gone afterwards
    assert all(not isinstance(h, type(caught._handler)) for h in logging.getLogger().handlers)


def test_merge_keeps_first_appearance_order() -> None:
    a = {"category": "UserWarning", "message": "m", "filename": "megatron/a.py", "lineno": 1}
    b = {**a, "lineno": 2}
    assert merge_warnings([a, b], [b, a]) == [a, b]


def test_exceptions_are_described_with_their_real_location() -> None:
    try:
        import megatron.core.no_such_module  # noqa: F401
    except ImportError as e:
        text = describe_exception(e)
    assert text.startswith("ModuleNotFoundError: No module named 'megatron.core.no_such_module'")
    assert "<frozen" not in text and "(at " in text and "test_payload_common.py:" in text
