"""harness.diff: what changed between two releases, for bridge users."""

from __future__ import annotations

from bridge.requirements import Requirements
from harness.diff import diff_introspections
from harness.features import feature_by_name
from harness.requirements import requirement_rows


def test_diff_between_0_10_and_0_11(pypi_scans):
    rows = requirement_rows([Requirements(family="demo", config_fields=frozenset({"first_pipeline_num_layers"}))],
                            [feature_by_name("attention_backend")])
    report = diff_introspections(pypi_scans["0.10.0"], pypi_scans["0.11.0"], rows)
    tc = report["transformer_config"]
    assert "attention_backend" in tc["added"] and "first_pipeline_num_layers" in tc["removed"]
    assert report["from"]["version"] == "0.10.0" and report["to"]["version"] == "0.11.0"
    changes = {v["row"]: (v["from"]["status"], v["to"]["status"]) for v in report["verdicts"]}
    assert changes == {"demo": ("supported", "renamed"), "attention_backend": ("missing", "supported")}


def test_diff_of_a_revision_with_itself_is_empty(pypi_scans):
    report = diff_introspections(pypi_scans["0.13.0"], pypi_scans["0.13.0"])
    assert report["transformer_config"]["added"] == report["transformer_config"]["removed"] == []
    assert report["modules"]["added"] == [] and report["verdicts"] == [] and report["subclasses"] == {}


def test_diff_reports_gpt_params_and_modules(pypi_scans):
    report = diff_introspections(pypi_scans["0.11.0"], pypi_scans["0.13.0"])
    assert "mtp_block_spec" in report["gpt_model_params"]["added"]
    assert report["modules"]["named"]["mtp"] == {"from": False, "to": True}
