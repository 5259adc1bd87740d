"""The AWS side of the kit, as the parameters of the API calls that apply it (each checked
against botocore's model): target tracking for an Auto Scaling group and for an ECS service,
both on the queue's messages (visible plus in flight) per slot, so that a group never scales in
boxes whose jobs still run; and the group's instance types weighted by their slots."""

from __future__ import annotations

from typing import Any

from kit.worker_facts import KitOptions, WorkerFacts

Call = dict[str, Any]
TARGET_MESSAGES_PER_SLOT = 1.0
SCALE_IN_COOLDOWN_S = 300


def _queue_metric(worker: WorkerFacts, metric_id: str, name: str) -> dict[str, Any]:
    metric = {
        "Namespace": "AWS/SQS",
        "MetricName": name,
        "Dimensions": [{"Name": "QueueName", "Value": worker.queue_name}],
    }
    return {"Id": metric_id, "MetricStat": {"Metric": metric, "Stat": "Sum"}, "ReturnData": False}


def group_target_tracking(kit: KitOptions, worker: WorkerFacts) -> Call:
    """`autoscaling put-scaling-policy`: messages per slot, where the group's capacity counts
    slots (each instance type weighted by its slots; needs group metrics collection on)."""
    capacity = {
        "Namespace": "AWS/AutoScaling",
        "MetricName": "GroupInServiceCapacity",
        "Dimensions": [{"Name": "AutoScalingGroupName", "Value": kit.app}],
    }
    metrics = [
        _queue_metric(worker, "visible", "ApproximateNumberOfMessagesVisible"),
        _queue_metric(worker, "in_flight", "ApproximateNumberOfMessagesNotVisible"),
        {"Id": "slots", "MetricStat": {"Metric": capacity, "Stat": "Average"}, "ReturnData": False},
        {
            "Id": "per_slot",
            "Expression": "(visible + in_flight) / IF(slots > 0, slots, 1)",
            "Label": "queued and running messages per slot",
            "ReturnData": True,
        },
    ]
    return {
        "AutoScalingGroupName": kit.app,
        "PolicyName": f"{kit.app}-messages-per-slot",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingConfiguration": {
            "CustomizedMetricSpecification": {"Metrics": metrics},
            "TargetValue": TARGET_MESSAGES_PER_SLOT,
        },
    }


def group_weights(kit: KitOptions) -> Call | None:
    """`autoscaling update-auto-scaling-group`: each instance type's weight is its slots, so
    capacity counts slots; None without `--instance-type`."""
    if not kit.instance_types:
        return None
    overrides = [{"InstanceType": kind, "WeightedCapacity": str(slots)} for kind, slots in kit.instance_types]
    template = {"LaunchTemplateSpecification": {"LaunchTemplateName": kit.app, "Version": "$Latest"}}
    return {
        "AutoScalingGroupName": kit.app,
        "MixedInstancesPolicy": {"LaunchTemplate": {**template, "Overrides": overrides}},
    }


def service_scalable_target(kit: KitOptions) -> Call:
    """`application-autoscaling register-scalable-target` for the ECS service."""
    return {
        "ServiceNamespace": "ecs",
        "ResourceId": f"service/{kit.app}/{kit.app}",
        "ScalableDimension": "ecs:service:DesiredCount",
        "MinCapacity": 0,
        "MaxCapacity": kit.max_replicas,
    }


def service_target_tracking(kit: KitOptions, worker: WorkerFacts) -> Call:
    """`application-autoscaling put-scaling-policy` for the ECS service: messages per slot, a
    task holding `--workers` slots (its running tasks from Container Insights)."""
    tasks = {
        "Namespace": "ECS/ContainerInsights",
        "MetricName": "RunningTaskCount",
        "Dimensions": [{"Name": "ClusterName", "Value": kit.app}, {"Name": "ServiceName", "Value": kit.app}],
    }
    metrics = [
        _queue_metric(worker, "visible", "ApproximateNumberOfMessagesVisible"),
        _queue_metric(worker, "in_flight", "ApproximateNumberOfMessagesNotVisible"),
        {"Id": "tasks", "MetricStat": {"Metric": tasks, "Stat": "Average"}, "ReturnData": False},
        {
            "Id": "per_slot",
            "Expression": f"(visible + in_flight) / (IF(tasks > 0, tasks, 1) * {worker.slots})",
            "Label": "queued and running messages per slot",
            "ReturnData": True,
        },
    ]
    return {
        "ServiceNamespace": "ecs",
        "ResourceId": f"service/{kit.app}/{kit.app}",
        "ScalableDimension": "ecs:service:DesiredCount",
        "PolicyName": f"{kit.app}-messages-per-slot",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "CustomizedMetricSpecification": {"Metrics": metrics},
            "TargetValue": TARGET_MESSAGES_PER_SLOT,
            "ScaleInCooldown": SCALE_IN_COOLDOWN_S,
        },
    }
