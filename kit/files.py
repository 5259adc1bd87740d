"""The kit's files: YAML for Kubernetes (several documents a file), JSON for the AWS calls
(`{"service": ..., "calls": {OPERATION: PARAMETERS}}`, each applied with the AWS CLI's
`--cli-input-json`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kit.aws import group_target_tracking, group_weights, service_scalable_target, service_target_tracking
from kit.keda import deployment, scaled_job, scaled_object_on_scaling, scaled_object_on_sqs
from kit.worker_facts import KitOptions, WorkerFacts


def kit_files(kit: KitOptions, worker: WorkerFacts, command: str) -> dict[str, str]:
    """Each file's path under the kit's directory, and its text; `command`: how it was rendered."""
    header = f"# Rendered from the worker's settings by: {command}\n"
    header += "# Change the worker's command line and render it again rather than editing this file.\n"
    keda = {
        "keda/deployment.yaml": deployment(kit, worker),
        "keda/scaledobject-scaling.yaml": scaled_object_on_scaling(kit, worker),
        "keda/scaledobject-sqs.yaml": scaled_object_on_sqs(kit, worker),
        "keda/scaledjob.yaml": scaled_job(kit, worker),
    }
    files = {path: header + _yaml(documents) for path, documents in keda.items()}
    group_calls: dict[str, Any] = {"PutScalingPolicy": group_target_tracking(kit, worker)}
    weights = group_weights(kit)
    if weights is not None:
        group_calls["UpdateAutoScalingGroup"] = weights
    files["aws/autoscaling-group-scaling.json"] = _json("autoscaling", command, group_calls)
    service_calls = {
        "RegisterScalableTarget": service_scalable_target(kit),
        "PutScalingPolicy": service_target_tracking(kit, worker),
    }
    files["aws/ecs-service-scaling.json"] = _json("application-autoscaling", command, service_calls)
    return files


def write_kit(directory: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def _yaml(documents: list[dict[str, Any]]) -> str:
    import yaml  # noqa: PLC0415 (only the kit command needs it)

    return "---\n".join(yaml.safe_dump(document, sort_keys=False, width=120) for document in documents)


def _json(service: str, command: str, calls: dict[str, Any]) -> str:
    return json.dumps({"rendered_by": command, "service": service, "calls": calls}, indent=2) + "\n"
