"""The code's layers hold: each package imports only packages below it, no product code imports
the settings package from below or a concrete queue backend from outside queues/, and nothing
imports the tests."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO

# Top to bottom, as the README's "How it works" lists them.
LAYERS = ("assembly", "config", "client", "pool", "monitoring", "journal", "queues", "runners", "staging",
          "protocol", "common")  # fmt: skip
QUEUE_BACKENDS = ("queues.local", "queues.sqs")


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            yield node.module


def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_only_packages_below_it(package: str) -> None:
    below = set(LAYERS[LAYERS.index(package) + 1 :])
    above = set(LAYERS) - below - {package}
    for path in python_files(package):
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top not in above, f"{path.relative_to(REPO)} imports {module}, from a layer above it"


def test_only_queues_knows_the_queue_backends() -> None:
    for path in python_files(*(layer for layer in LAYERS if layer != "queues")):
        for module in imported_modules(path):
            assert module not in QUEUE_BACKENDS, f"{path.relative_to(REPO)} imports the backend {module}"


def test_nothing_but_the_tests_imports_the_tests() -> None:
    for path in [*python_files(*LAYERS, "bench", "testkit"), REPO / "supervisor.py"]:
        for module in imported_modules(path):
            assert module.split(".")[0] != "tests", f"{path.relative_to(REPO)} imports {module}"
