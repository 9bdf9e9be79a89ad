"""The CI workflow that upstream triggers (.github/workflows/mcore-compat.yml) calls the real CLI.

The `mcore-compat run` line of the workflow is parsed by the command's own argument parser, so
renaming or removing a flag (or a suite) breaks this test, not the first upstream dispatch.
"""

from __future__ import annotations

import argparse
import re
import shlex

import pytest
import yaml

from harness.commands import run as run_command
from harness.versions import project_root

WORKFLOW = project_root() / ".github" / "workflows" / "mcore-compat.yml"
INPUT_FOR_FLAG = {"--mcore-repo": "mcore_repo", "--mcore-commit": "mcore_commit", "--suite": "test_suite"}


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


@pytest.fixture(scope="module")
def job(workflow) -> dict:
    return workflow["jobs"]["run"]  # the sweep's jobs: tests/harness/test_sweep_workflow.py


def run_step(job: dict) -> dict:
    steps = [s for s in job["steps"] if re.search(r"(^|/)mcore-compat\s+run\b", s.get("run", ""), re.MULTILINE)]
    assert len(steps) == 1, "expected exactly one step calling `mcore-compat run`"
    return steps[0]


def command_args(step: dict) -> list[str]:
    tokens = shlex.split(step["run"].replace("\\\n", " "))
    at = tokens.index("run")
    assert tokens[at - 1].endswith("mcore-compat")
    return tokens[at + 1:]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcore-compat run", exit_on_error=False)
    run_command.add_arguments(p)
    return p


def test_triggers_take_repo_commit_and_suite(workflow):
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert set(INPUT_FOR_FLAG.values()) <= set(inputs)
    assert set(inputs) - set(INPUT_FOR_FLAG.values()) == {"sweep", "gpu_runner_labels"}  # the sweep's
    assert inputs["mcore_commit"]["required"] is False  # empty: a sweep-only dispatch; the run job is skipped
    assert "inputs.mcore_commit != ''" in workflow["jobs"]["run"]["if"]
    assert set(inputs["test_suite"]["options"]) == set(run_command.SUITES)
    assert inputs["test_suite"]["default"] in run_command.SUITES
    assert "mcore-commit" in workflow["on"]["repository_dispatch"]["types"]


def test_run_line_parses_with_the_cli_parser_for_every_suite(workflow, job):
    args = command_args(run_step(job))
    env = job["env"]
    variables = {tok[1:] for tok in args if tok.startswith("$")}
    assert variables <= set(env), f"the run line uses variables the job does not set: {variables - set(env)}"
    for suite in workflow["on"]["workflow_dispatch"]["inputs"]["test_suite"]["options"]:
        values = {name: (suite if name == "TEST_SUITE" else "x") for name in variables}
        parsed = parser().parse_args([values[t[1:]] if t.startswith("$") else t for t in args])
        assert parsed.suite == suite  # parsing also fails when a required flag is missing


@pytest.mark.parametrize("flag", sorted(INPUT_FOR_FLAG))
def test_each_flag_reads_its_dispatch_input_and_payload(job, flag):
    args = command_args(run_step(job))
    value = args[args.index(flag) + 1]
    assert value.startswith("$"), f"{flag} should come from the environment, found {value!r}"
    expression = job["env"][value[1:]]
    name = INPUT_FOR_FLAG[flag]
    assert re.search(rf"\binputs\.{name}\b", expression)
    assert re.search(rf"\bgithub\.event\.client_payload\.{name}\b", expression)


def test_inputs_never_pasted_into_scripts(job):
    for step in job["steps"]:
        assert "${{" not in step.get("run", ""), f"expression pasted into a script: {step.get('name')}"


def test_sets_up_python_311_bootstraps_uploads_and_summarises(job):
    steps = job["steps"]
    python = [s for s in steps if s.get("uses", "").startswith("actions/setup-python")]
    assert python and str(python[0]["with"]["python-version"]) == "3.11"
    assert any(s.get("run", "").strip() == "bash scripts/bootstrap.sh" for s in steps)
    assert (project_root() / "scripts" / "bootstrap.sh").is_file()
    args = command_args(run_step(job))
    out = args[args.index("--out") + 1].rstrip("/")
    upload = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload and upload[0]["with"]["path"].rstrip("/") == out and upload[0]["if"] == "always()"
    summary = [s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert summary and f"{out}/summary.md" in summary[0]["run"] and summary[0]["if"] == "always()"
    names = [s.get("name", s.get("uses")) for s in steps]
    assert names.index(run_step(job)["name"]) > names.index("Set up (scripts/bootstrap.sh)")
