"""The Grafana dashboard and the Prometheus alert rules in deploy/: the rules pass promtool's
check and unit tests, every alert is tested both firing and quiet, and a real Prometheus that
scrapes a running worker finds a series for every query of the dashboard."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from testkit.moto_server import free_port
from testkit.prometheus import PrometheusServer
from testkit.waiting import wait_until
from tests.support import REPO, Worker, job, required_program

DASHBOARD = REPO / "deploy" / "grafana" / "api-worker.json"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts-test.yml"
# What Grafana puts in place of the dashboard's variables, for a query Prometheus can answer.
VARIABLES = {"$__rate_interval": "1m", "$job": "api-worker", "$instance": ".*"}


def dashboard_queries() -> dict[str, str]:
    """Panel title and target ref -> PromQL, with the dashboard's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expression = target["expr"]
            for name, value in VARIABLES.items():
                expression = expression.replace(name, value)
            found[f"{panel['title']} [{target['refId']}]"] = expression
    return found


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_alert_rules_and_their_unit_tests_pass() -> None:
    promtool = required_program("promtool", "prometheus")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = set(alert_names())
    assert names == fired, f"alerts never tested firing: {names - fired}"
    assert names == quiet, f"alerts never tested quiet: {names - quiet}"
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_dashboard_filters_every_query_by_job_and_instance() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert {variable["name"] for variable in dashboard["templating"]["list"]} == {"datasource", "job", "instance"}
    for title, expression in json_queries(dashboard).items():
        for selector in re.findall(r"api_worker_\w+\{([^}]*)\}|process_\w+\{([^}]*)\}", expression):
            labels = "".join(selector)
            assert 'job=~"$job"' in labels and 'instance=~"$instance"' in labels, f"{title}: {expression}"


def json_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    return {
        f"{panel['title']} [{target['refId']}]": target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }


def test_a_real_prometheus_finds_a_series_for_every_dashboard_query(tmp_path: Path) -> None:
    required_program("prometheus", "prometheus")
    store = tmp_path / "store"
    store.mkdir()
    (store / "in.txt").write_text("some input\n")
    port = free_port()
    (tmp_path / "worker").mkdir()
    worker = Worker(tmp_path / "worker", workers=2, options=["--metrics-port", str(port), "--file-root", str(store)])
    prometheus = PrometheusServer(tmp_path, [f"127.0.0.1:{port}"], rules=(RULES,))
    try:
        worker.start()
        prometheus.start()
        staged: list[dict[str, Any]] = [
            {"type": "input", "name": "--infile", "value": f"file://{store}/in.txt"},
            {"type": "output", "name": "--outfile", "value": f"file://{store}/out.txt"},
            {"type": "parameter", "name": "--sleep", "value": 2},  # seen running by a snapshot
        ]
        for message in (job(staged), job([{"type": "parameter", "name": "--exit", "value": 3}])):
            worker.result(worker.submit(message))
        # Two scrapes after both results: every rate has its two samples.
        failed_scrapes = 'count_over_time((api_worker_jobs_total{status="failed"} > 0)[1m:1s]) >= 3'
        wait_until(lambda: prometheus.query(failed_scrapes), 30, "three scrapes that saw the failed job")

        empty = {title: expression for title, expression in dashboard_queries().items()
                 if not prometheus.query(expression)}  # fmt: skip
        assert not empty, f"dashboard queries with no series: {json.dumps(empty, indent=1)}"

        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        assert {rule["name"] for rule in rules} == set(alert_names())
        wait_until(lambda: all(rule.get("lastEvaluation", "").startswith("2") for rule in _rules(prometheus)),
                   20, "every rule evaluated")  # fmt: skip
        broken = {rule["name"]: rule.get("lastError") for rule in _rules(prometheus) if rule["health"] != "ok"}
        assert not broken, f"rules that failed against the worker's metrics: {broken}"
        firing = {rule["name"] for rule in _rules(prometheus) if rule["state"] != "inactive"}
        assert not firing, f"alerts about a healthy worker: {firing}"
    finally:
        prometheus.stop()
        worker.stop()


def _rules(prometheus: PrometheusServer) -> list[dict[str, Any]]:
    return [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
