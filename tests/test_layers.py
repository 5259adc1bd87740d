"""The code's layers hold: each package imports only packages below it, no product code imports
the settings package from below or a concrete queue backend from outside queues/, and nothing
imports the tests."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO

# Top to bottom, as docs/architecture.md lists them.
LAYERS = ("assembly", "kit", "config", "client", "pool", "monitoring", "journal", "queues", "fleet", "runners",
          "staging", "protocol", "common")  # fmt: skip
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


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
MAX_SUPERVISOR_LINES = 250


def product_files() -> list[Path]:
    return [*python_files(*LAYERS), REPO / "supervisor.py"]


def test_no_product_module_is_over_400_lines() -> None:
    lines = {str(path.relative_to(REPO)): len(path.read_text().splitlines()) for path in product_files()}
    long = {name: count for name, count in lines.items() if count > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_product_function_is_over_50_lines() -> None:
    long = {}
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_supervisor_class_only_orchestrates() -> None:
    tree = ast.parse((REPO / "pool" / "supervisor.py").read_text(encoding="utf-8"))
    supervisor = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Supervisor")
    lines = (supervisor.end_lineno or supervisor.lineno) - supervisor.lineno + 1
    assert lines < MAX_SUPERVISOR_LINES, f"the Supervisor class has {lines} lines"


def test_only_queues_asks_what_kind_of_queue_it_is() -> None:
    """Backends bring their behaviour (`JobQueue.profile`, `job_message`): nothing outside
    queues/ branches on whether a queue is local or FIFO."""
    for path in [*python_files(*(layer for layer in LAYERS if layer != "queues")), REPO / "supervisor.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("is_local", "is_fifo"):
                raise AssertionError(f"{path.relative_to(REPO)}:{node.lineno} reads {node.attr}")


def test_the_settings_package_is_read_only_by_the_composition_root() -> None:
    """config/ builds on nothing of the pool, and only assembly/ reads the settings."""
    for path in python_files("config"):
        for module in imported_modules(path):
            assert module.split(".")[0] != "pool", f"{path.relative_to(REPO)} imports {module}"
    for path in python_files(*(layer for layer in LAYERS if layer not in ("assembly", "config"))):
        for module in imported_modules(path):
            assert module.split(".")[0] != "config", f"{path.relative_to(REPO)} imports {module}"


def test_the_session_keeps_off_the_users_own_state() -> None:
    """conftest gives the session a HOME and XDG directories of its own (and fails the run if
    anything under the real ones changed)."""
    home = Path(os.environ["HOME"])
    assert home.name.startswith("api-worker-tests-home-")
    assert Path(os.environ["XDG_STATE_HOME"]).is_relative_to(home)


def test_a_pool_child_imports_nothing_heavy_it_does_not_use() -> None:
    """Every child of the pool pays for each module it imports (8 children: 8 times): no metrics,
    no OpenSSL (hashlib), no AWS or Docker SDK until a job needs one."""
    code = "import sys, pool.child.main; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.split())  # fmt: skip
    heavy = {"_hashlib", "prometheus_client", "docker", "boto3", "botocore", "monitoring.metrics"}
    assert not loaded & heavy, f"a pool child imports {sorted(loaded & heavy)}"


CHILD_SIDE = "pool.child"
SHARED_BY_BOTH_SIDES = ("pool.wire", "pool.notice_board", "pool.child_settings", "pool.admission", "pool.outcomes")
MAX_MODULES_IN_A_FOLDER = 20


def test_the_child_side_imports_nothing_of_the_supervisor_side() -> None:
    """A pool child loads its own folder and the modules both processes share, nothing of the
    supervisor's parts; the shared ones keep to the same rule."""
    allowed = (CHILD_SIDE, *SHARED_BY_BOTH_SIDES)
    checked = [*python_files("pool/child"), *(REPO / f"{name.replace('.', '/')}.py" for name in SHARED_BY_BOTH_SIDES)]
    for path in checked:
        for module in imported_modules(path):
            if module.startswith("pool."):
                assert module.startswith(allowed), (
                    f"{path.relative_to(REPO)} imports {module}, of the supervisor's side"
                )


def test_no_product_folder_holds_more_than_20_modules() -> None:
    for layer in LAYERS:
        for folder in [REPO / layer, *(path for path in (REPO / layer).rglob("*") if path.is_dir())]:
            modules = [path for path in folder.glob("*.py") if path.name != "__init__.py"]
            assert len(modules) <= MAX_MODULES_IN_A_FOLDER, f"{folder.relative_to(REPO)} holds {len(modules)} modules"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_no_product_modules_import_each_other_in_a_circle() -> None:
    """Imports under TYPE_CHECKING count: a circle is one for a reader all the same."""
    modules = {_module_name(path): path for path in product_files()}
    graph = {name: {m for m in imported_modules(path) if m in modules and m != name} for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("an import circle: " + " -> ".join([*trail[trail.index(name) :], name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
