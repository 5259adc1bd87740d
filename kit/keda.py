"""The Kubernetes side of the kit: the worker's Deployment and Service, a KEDA ScaledObject on
its own `/scaling` (`metrics-api`), one on the SQS queue (`aws-sqs-queue`, counting messages in
flight), and a ScaledJob for multi-hour jobs, whose pods leave once idle."""

from __future__ import annotations

from typing import Any

from kit.worker_facts import KitOptions, WorkerFacts

Manifest = dict[str, Any]
KEDA_API = "keda.sh/v1alpha1"
WORKER_OVERHEAD_BYTES = 512 * 1024**2  # the supervisor and its pool, beside the jobs' memory
IDLE_EXIT_S = 60  # a ScaledJob's pod leaves once it has had no job this long


def deployment(kit: KitOptions, worker: WorkerFacts) -> list[Manifest]:
    """The Deployment, its grace tied to the worker's, and the Service KEDA reads /scaling through."""
    app, namespace = kit.app, kit.namespace
    labels = _labels(app)
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": _pod(kit.image, worker, list(worker.argv))},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": "monitoring", "port": worker.metrics_port, "targetPort": "monitoring"}],
        },
    }
    return [deploy, service]


def scaled_object_on_scaling(kit: KitOptions, worker: WorkerFacts) -> list[Manifest]:
    """KEDA reads one worker's /scaling through the Service: `fleet_wanted`, the whole queue's
    backlog and messages in flight, over the slots per worker. A worker must run for it to
    answer, so it keeps one."""
    trigger = {
        "type": "metrics-api",
        "metricType": "AverageValue",
        "metadata": {
            "url": f"http://{kit.app}.{kit.namespace}.svc:{worker.metrics_port}/scaling",
            "format": "json",
            "valueLocation": "fleet_wanted",
            "targetValue": str(worker.slots),
        },
    }
    return [_scaled_object(kit, "on-scaling", 1, trigger)]


def scaled_object_on_sqs(kit: KitOptions, worker: WorkerFacts) -> list[Manifest]:
    """KEDA asks SQS itself (pod identity): visible plus in-flight messages over the slots per
    worker, from zero."""
    trigger = {
        "type": "aws-sqs-queue",
        "authenticationRef": {"name": f"{kit.app}-aws"},
        "metadata": _sqs_metadata(worker, in_flight=True),
    }
    return [_trigger_authentication(kit), _scaled_object(kit, "on-sqs", 0, trigger)]


def scaled_job(kit: KitOptions, worker: WorkerFacts) -> list[Manifest]:
    """For multi-hour jobs: a pod per slots' worth of visible messages, never stopped by a
    scale-in; each pod's worker exits once idle, so its Job completes. In-flight messages are
    not counted: a pod already runs each (KEDA's `accurate` strategy subtracts running pods)."""
    argv = list(worker.argv)
    if worker.exit_when_idle_s is None:
        argv = ["--exit-when-idle", str(IDLE_EXIT_S), *argv]
    pod = {**_pod(kit.image, worker, argv), "restartPolicy": "Never"}
    app = kit.app
    job = {
        "apiVersion": KEDA_API,
        "kind": "ScaledJob",
        "metadata": {"name": f"{app}-jobs", "namespace": kit.namespace, "labels": _labels(app)},
        "spec": {
            "jobTargetRef": {
                "backoffLimit": 0,  # the worker retries a job; a pod that fails is not run again
                "template": {"metadata": {"labels": _labels(app)}, "spec": pod},
            },
            "pollingInterval": 30,
            "maxReplicaCount": kit.max_replicas,
            "successfulJobsHistoryLimit": 5,
            "failedJobsHistoryLimit": 5,
            "scalingStrategy": {"strategy": "accurate"},
            "triggers": [
                {
                    "type": "aws-sqs-queue",
                    "authenticationRef": {"name": f"{app}-aws"},
                    "metadata": _sqs_metadata(worker, in_flight=False),
                }
            ],
        },
    }
    return [_trigger_authentication(kit), job]


def _pod(image: str, worker: WorkerFacts, argv: list[str]) -> Manifest:
    memory = _quantity(worker.memory_bytes + WORKER_OVERHEAD_BYTES)
    resources = {"cpu": f"{worker.cpus:g}", "memory": memory}
    return {
        # SIGTERM, then the shutdown grace, the kill grace and the last results before SIGKILL.
        "terminationGracePeriodSeconds": worker.grace_s,
        "containers": [
            {
                "name": "worker",
                "image": image,
                "args": argv,
                "env": [{"name": "AWS_REGION", "value": worker.region}],
                "ports": [{"name": "monitoring", "containerPort": worker.metrics_port}],
                "readinessProbe": {**_health_check(), "periodSeconds": 10},
                "livenessProbe": {**_health_check(), "periodSeconds": 30, "failureThreshold": 4},
                "resources": {"requests": resources, "limits": {"memory": memory}},
            }
        ],
    }


def _sqs_metadata(worker: WorkerFacts, *, in_flight: bool) -> dict[str, str]:
    return {
        "queueURL": worker.queue_url,
        "queueLength": str(worker.slots),
        "awsRegion": worker.region,
        "scaleOnInFlight": "true" if in_flight else "false",
    }


def _scaled_object(kit: KitOptions, suffix: str, least: int, trigger: Manifest) -> Manifest:
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": {"name": f"{kit.app}-{suffix}", "namespace": kit.namespace, "labels": _labels(kit.app)},
        "spec": {
            "scaleTargetRef": {"name": kit.app},
            "minReplicaCount": least,
            "maxReplicaCount": kit.max_replicas,
            "pollingInterval": 30,
            "cooldownPeriod": 300,
            "triggers": [trigger],
        },
    }


def _trigger_authentication(kit: KitOptions) -> Manifest:
    """KEDA's own AWS identity (IRSA / EKS pod identity) for the SQS scaler: sqs:GetQueueAttributes."""
    return {
        "apiVersion": KEDA_API,
        "kind": "TriggerAuthentication",
        "metadata": {"name": f"{kit.app}-aws", "namespace": kit.namespace, "labels": _labels(kit.app)},
        "spec": {"podIdentity": {"provider": "aws"}},
    }


def _health_check() -> Manifest:
    return {"httpGet": {"path": "/healthz", "port": "monitoring"}}


def _quantity(size: int) -> str:
    """Bytes as Kubernetes writes them: 3584Mi, or plain bytes."""
    mebibyte = 1024**2
    return f"{size // mebibyte}Mi" if size % mebibyte == 0 else str(size)


def _labels(app: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "api-worker", "app.kubernetes.io/instance": app}
