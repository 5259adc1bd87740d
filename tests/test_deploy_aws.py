"""deploy/aws/: the lifecycle hook's CloudFormation passes cfn-lint and a range check cfn-lint
misses (HeartbeatTimeout 30 to 7,200 s), and a broken copy fails each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

pytestmark = pytest.mark.integration
TEMPLATE = REPO / "deploy" / "aws" / "lifecycle-hook.yaml"
HEARTBEAT_RANGE_S = (30, 7200)


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation's short forms (`!Ref X`) as {"Ref": X}."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node)}
    return {name: loader.construct_mapping(node)}  # type: ignore[arg-type]


_CloudFormationLoader.add_multi_constructor("!", _short_form)


def heartbeat_problems(template: dict[str, Any]) -> list[str]:
    """Every HeartbeatTimeout a hook may get, out of Auto Scaling's 30 to 7,200 s."""
    low, high = HEARTBEAT_RANGE_S
    problems = []
    parameters = template.get("Parameters", {})
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::AutoScaling::LifecycleHook":
            continue
        value = resource.get("Properties", {}).get("HeartbeatTimeout")
        if isinstance(value, dict) and "Ref" in value:
            parameter = parameters[value["Ref"]]
            values = {key: parameter.get(key) for key in ("Default", "MinValue", "MaxValue")}
        else:
            values = {"HeartbeatTimeout": value}
        for key, number in values.items():
            if number is None or not low <= int(number) <= high:
                problems.append(f"{name}: {key} {number} is not within {low} to {high} s")
    return problems


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(path)], capture_output=True, text=True, check=False
    )


def test_the_lifecycle_hook_template_passes_cfn_lint_and_the_range_check() -> None:
    linted = _lint(TEMPLATE)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert heartbeat_problems(yaml.load(TEMPLATE.read_text(), _CloudFormationLoader)) == []


def test_a_broken_copy_fails_each_check(tmp_path: Path) -> None:
    text = TEMPLATE.read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("autoscaling:EC2_INSTANCE_TERMINATING", "autoscaling:EC2_INSTANCE_VANISHING"))
    assert _lint(broken).returncode != 0
    too_long = yaml.load(text.replace("MaxValue: 7200", "MaxValue: 172800"), _CloudFormationLoader)
    assert heartbeat_problems(too_long) == ["DrainHook: MaxValue 172800 is not within 30 to 7200 s"]
