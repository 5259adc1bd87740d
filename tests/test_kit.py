"""The deployment kit: what is in deploy/keda and deploy/aws is what `supervisor.py kit`
renders from the worker command line its files name; each file passes its validator (KEDA's
CRD schemas, `kubernetes-validate --strict`, botocore's parameter validation), and a broken
copy of each fails it."""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters

from tests.support import REPO, SUPERVISOR

pytestmark = pytest.mark.integration  # node, kubernetes-validate and the kit command run as processes
DEPLOY = REPO / "deploy"
CHECKER = DEPLOY / "keda" / "check"
KEDA_FILES = sorted((DEPLOY / "keda").glob("*.yaml"))
AWS_FILES = sorted((DEPLOY / "aws").glob("*scaling.json"))
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
WORKER = [
    "--queue", "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs", "--workers", "4",
    "--metrics-port", "9100", "--metrics-address", "0.0.0.0", "--memory-capacity", "3G", "--cpu-capacity", "4",
]  # fmt: skip


def kit(tmp_path: Path, *arguments: str, worker: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SUPERVISOR), "kit", "--image", "img:1", "--out", str(tmp_path), *arguments, "--"]
    command += worker if worker is not None else [*WORKER, "native", "--", "/bin/true"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def keda_documents(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [document for document in found if document["apiVersion"].startswith("keda.sh/")]


def check_keda(found: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    if not (CHECKER / "node_modules").exists() or shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("the KEDA schema check is not installed: npm ci --prefix deploy/keda/check")
        pytest.skip("the KEDA schema check is not installed (npm ci --prefix deploy/keda/check)")
    command = ["node", str(CHECKER / "validate.mjs")]
    return subprocess.run(command, input=json.dumps(found), capture_output=True, text=True, timeout=60, check=False)


def check_kubernetes(path: Path) -> subprocess.CompletedProcess[str]:
    command = [str(KUBERNETES_VALIDATE), "--strict", "--no-warn", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def check_aws(content: dict[str, Any]) -> None:
    """ParamValidationError unless every call's parameters fit botocore's model of it."""
    model = botocore.session.get_session().get_service_model(content["service"])
    for operation, parameters in content["calls"].items():
        validate_parameters(parameters, model.operation_model(operation).input_shape)


def test_the_kit_in_the_repository_is_what_its_command_renders(tmp_path: Path) -> None:
    said = (DEPLOY / "keda" / "deployment.yaml").read_text().splitlines()[0]
    command = shlex.split(said.split("by: ", 1)[1])
    assert command[:2] == ["supervisor.py", "kit"]
    rendered = tmp_path / "rendered"
    done = subprocess.run(
        [sys.executable, str(SUPERVISOR), *command[1:2], "--out", str(rendered), *command[2:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for path in [*KEDA_FILES, *AWS_FILES]:
        assert (rendered / path.relative_to(DEPLOY)).read_text() == path.read_text(), (
            f"{path} is stale: render it again"
        )


def test_the_keda_manifests_fit_kedas_schemas() -> None:
    found = [document for path in KEDA_FILES for document in keda_documents(documents(path))]
    assert {document["kind"] for document in found} == {"ScaledObject", "ScaledJob", "TriggerAuthentication"}
    done = check_keda(found)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_deployment_and_service_pass_strict_validation() -> None:
    done = check_kubernetes(DEPLOY / "keda" / "deployment.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_aws_calls_fit_botocores_model() -> None:
    assert [path.name for path in AWS_FILES] == ["autoscaling-group-scaling.json", "ecs-service-scaling.json"]
    for path in AWS_FILES:
        check_aws(json.loads(path.read_text()))


def _without_scale_target(found: list[dict[str, Any]]) -> None:
    next(d for d in found if d["kind"] == "ScaledObject")["spec"].pop("scaleTargetRef")


def _trigger_list_as_text(found: list[dict[str, Any]]) -> None:
    next(d for d in found if d["kind"] == "ScaledJob")["spec"]["triggers"] = "aws-sqs-queue"


@pytest.mark.parametrize("break_it", [_without_scale_target, _trigger_list_as_text])
def test_a_broken_keda_manifest_fails_its_check(break_it: Callable[[list[dict[str, Any]]], None]) -> None:
    found = copy.deepcopy([document for path in KEDA_FILES for document in keda_documents(documents(path))])
    break_it(found)
    done = check_keda(found)
    assert done.returncode == 1 and "invalid" in done.stdout, done.stdout


def test_a_broken_deployment_fails_strict_validation(tmp_path: Path) -> None:
    found = documents(DEPLOY / "keda" / "deployment.yaml")
    found[0]["spec"]["template"]["spec"]["terminationGracePeriod"] = 30  # no such field
    broken = tmp_path / "deployment.yaml"
    broken.write_text(yaml.safe_dump_all(found))
    done = check_kubernetes(broken)
    assert done.returncode != 0 and "terminationGracePeriod" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("path", "change"),
    [
        ("autoscaling-group-scaling.json", lambda c: c["PutScalingPolicy"]["TargetTrackingConfiguration"].update(
            TargetValue="one")),
        ("ecs-service-scaling.json", lambda c: c["PutScalingPolicy"].pop("ServiceNamespace")),
    ],
)  # fmt: skip
def test_a_broken_aws_call_fails_botocores_validation(path: str, change: Callable[[dict[str, Any]], None]) -> None:
    content = json.loads((DEPLOY / "aws" / path).read_text())
    change(content["calls"])
    with pytest.raises(ParamValidationError):
        check_aws(content)


def test_the_grace_follows_the_workers_shutdown_and_kill_grace(tmp_path: Path) -> None:
    done = kit(tmp_path, worker=[*WORKER, "--shutdown-grace", "100", "--kill-grace", "10", "native", "--", "/bin/true"])
    assert done.returncode == 0, done.stderr
    deployment, _service = documents(tmp_path / "keda" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 100 + 10 + 30  # and 30 s for the last results
    assert pod["containers"][0]["args"][:2] == ["--queue", WORKER[1]]
    job = next(d for d in documents(tmp_path / "keda" / "scaledjob.yaml") if d["kind"] == "ScaledJob")
    assert job["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["args"][:2] == ["--exit-when-idle", "60"]


@pytest.mark.parametrize(
    ("worker", "says"),
    [
        (["--queue", "local:/tmp/q", "--metrics-port", "1"], "must be an SQS queue URL"),
        ([*WORKER[:4], *WORKER[6:]], "needs --metrics-port"),
        ([*WORKER, "--metrics-address", "127.0.0.1"], "--metrics-address 0.0.0.0"),
        (WORKER[:-4], "give the worker --memory-capacity"),
    ],
)
def test_the_kit_names_what_the_workers_command_line_lacks(tmp_path: Path, worker: list[str], says: str) -> None:
    done = kit(tmp_path, worker=[*worker, "native", "--", "/bin/true"])
    assert done.returncode == 2 and says in done.stderr, done.stderr


def test_an_instance_type_must_say_its_slots(tmp_path: Path) -> None:
    done = kit(tmp_path, "--instance-type", "m7i.large")
    assert done.returncode == 2 and "must be TYPE=SLOTS" in done.stderr
