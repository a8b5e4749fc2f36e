"""The layering rules of docs/architecture.md, checked from the source's own imports (every
import statement, including those inside functions and under TYPE_CHECKING)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "chimeproxy"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The chimeproxy modules a file imports (`from chimeproxy.x import y` counts y when y is
    a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    here = module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                package = here.split(".")[: -node.level or None]
                if path.name != "__init__.py":
                    package = here.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


MODULES = {
    module_name(path): path
    for path in (SOURCE / PACKAGE).rglob("*.py")
    if "migrations" not in path.parts
}


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = {target for target in imports_of(path) if target in MODULES}
        targets.discard(name)
        # `from chimeproxy import x` imports the package first: a package's own __init__ is
        # not a dependency worth a rule.
        edges[name] = {t for t in targets if t != PACKAGE}
    return edges


def layer(module: str) -> str:
    """The package a module belongs to (`store`, `domain`...), or the top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


EDGES = graph()


def test_the_import_graph_is_read() -> None:
    # A broken reader would make every rule below pass vacuously.
    assert len(MODULES) > 40
    assert "chimeproxy.store.database" in EDGES["chimeproxy.store.proxy"]
    assert "chimeproxy.domain.lifecycle" in EDGES["chimeproxy.shapes"]


def test_no_module_imports_itself_back_through_others() -> None:
    assert find_cycle(EDGES) is None, f"import cycle: {' -> '.join(find_cycle(EDGES) or [])}"


def test_no_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for source, targets in EDGES.items():
        packages.setdefault(layer(source), set()).update(
            layer(t) for t in targets if layer(t) != layer(source)
        )
    cycle = find_cycle(packages)
    assert cycle is None, f"package cycle: {' -> '.join(cycle or [])}"


FORBIDDEN = {
    # storage never calls up
    "store": {"protocol", "operations", "dataplane", "console", "app", "cli", "services",
              "sweeper", "metrics", "events", "shapes", "testing"},
    # the protocol layer knows nothing of sessions
    "protocol": {"store", "domain", "operations", "dataplane", "console", "services", "app",
                 "cli", "shapes", "events", "sweeper", "metrics"},
    # the API and the data plane are siblings: what both need lives below them
    "operations": {"dataplane", "console", "app", "cli"},
    "dataplane": {"operations", "console", "app", "cli"},
    # the console is the API's sibling at assembly level: it reads the store and speaks HTTP
    "console": {"operations", "dataplane", "app", "cli", "sweeper", "metrics", "testing"},
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_only_what_it_may(package: str) -> None:
    broken = [
        f"{source} imports {target}"
        for source, targets in EDGES.items()
        if layer(source) == package
        for target in targets
        if layer(target) in FORBIDDEN[package]
    ]
    assert broken == []


def test_only_the_application_imports_the_console() -> None:
    broken = [
        f"{source} imports {target}"
        for source, targets in EDGES.items()
        if layer(source) not in ("console", "app")
        for target in targets
        if layer(target) == "console"
    ]
    assert broken == []
    assert "chimeproxy.console.web" in EDGES["chimeproxy.app"]


def test_the_domain_imports_only_the_domain() -> None:
    broken = [
        f"{source} imports {target}"
        for source, targets in EDGES.items()
        if layer(source) == "domain"
        for target in targets
        if layer(target) != "domain"
    ]
    assert broken == []


def test_the_rules_catch_a_broken_import() -> None:
    """The checker itself: a store module importing the protocol layer is found."""
    edges = {**EDGES, "chimeproxy.store.bad": {"chimeproxy.protocol.errors"}}
    assert any(
        layer(source) == "store" and layer(target) in FORBIDDEN["store"]
        for source, targets in edges.items()
        for target in targets
    )
    phone = "chimeproxy.domain.phone"
    looped = {**EDGES, phone: {*EDGES[phone], "chimeproxy.domain.catalog"}}
    assert find_cycle(looped) is not None


# The tests' own rule: what test modules share lives in tests/conftest.py and
# tests/integration/helpers.py and stubs.py; a test module never imports another (which would
# run the other's module code, fixtures and all, and tie the two together).

TESTS = Path(__file__).resolve().parents[1]


def imported_test_modules(path: Path) -> set[str]:
    """The test modules (`test_*`) a file imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name.rpartition(".")[2].startswith("test_")}


def test_no_test_module_imports_another() -> None:
    modules = sorted(TESTS.rglob("test_*.py"))
    assert len(modules) > 30
    broken = {
        str(path.relative_to(TESTS)): imported
        for path in modules
        if (imported := imported_test_modules(path))
    }
    assert broken == {}


def test_the_test_rule_catches_an_import(tmp_path: Path) -> None:
    module = tmp_path / "test_example.py"
    module.write_text(
        "from tests.integration.test_sms import Recorder\n"
        "from tests.integration import helpers, test_events\n"
        "import tests.unit.test_x\n"
    )
    assert imported_test_modules(module) == {
        "tests.integration.test_sms",
        "tests.integration.test_events",
        "tests.unit.test_x",
    }
