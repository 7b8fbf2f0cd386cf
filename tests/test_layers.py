"""The packages depend on each other one way: protocol (pure data) <- transport (shared AMQP
plumbing) <- gateway, workers (neither knows the other) <- rpcfleet (the CLI and the client)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OURS = {"protocol", "transport", "gateway", "workers", "rpcfleet", "examples"}
ALLOWED = {
    "protocol": {"protocol"},
    "transport": {"protocol", "transport"},
    "gateway": {"protocol", "transport", "gateway"},
    "workers": {"protocol", "transport", "workers"},
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Our top-level packages each module of `package` imports (at any depth in the file)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names & OURS
    return found


def test_each_package_imports_only_the_layers_below_it() -> None:
    for package, allowed in ALLOWED.items():
        modules = imported_packages(package)
        assert modules, f"no modules found in {package}/"
        for module, names in modules.items():
            assert names <= allowed, f"{module} imports {sorted(names - allowed)}"


def import_graph() -> dict[str, set[str]]:
    """Each of our modules and the modules of ours it imports (at any depth in the file, under
    TYPE_CHECKING too: a circle only type checkers follow is still one for a reader)."""
    paths: dict[str, Path] = {}
    for package in OURS - {"examples"}:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def module_of(name: str) -> str | None:  # "a.b.Name" -> "a.b"; "a.b.c" -> itself
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        imported: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {module_of(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported |= {module_of(f"{node.module}.{alias.name}") for alias in node.names}
        graph[name] = {module for module in imported if module and module != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for other in graph[module]:
            if other not in order:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], order[other])
        if low[module] == order[module]:
            group = stack[stack.index(module):]
            del stack[stack.index(module):]
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    assert len(graph) > 100 and graph["gateway.calls"]  # the graph is the tree's
    assert circles(graph) == []
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_protocol_package_does_no_io() -> None:
    io_libraries = {"aio_pika", "aiormq", "asyncio", "socket", "httpx", "sqlite3", "psycopg"}
    for path in sorted((REPO / "protocol").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module.split(".")[0]}
            else:
                continue
            assert not names & io_libraries, f"{path.name} imports {names & io_libraries}"


def test_the_cli_reads_settings_without_loading_the_web_framework() -> None:
    import subprocess
    import sys

    code = ("import sys, rpcfleet.cli; rpcfleet.cli.build_parser(); "
            "print('fastapi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.strip()
    assert out == "False"


def test_a_gateway_process_loads_only_what_serving_needs() -> None:
    """RSS per gateway process: no worker side, no numpy (13 MiB), no httpx until a callback
    is sent, no psycopg with the SQLite store (9 MiB), no other command's module, no
    pydantic.v1 (1.5 MiB, FastAPI's check for v1 models: it is left importable after), and
    FastAPI's OpenAPI models unbuilt until /openapi.json is asked for (1.25 MiB)."""
    import subprocess
    import sys

    code = ("import sys, rpcfleet.cli\n"
            "rpcfleet.cli.build_parser(['gateway'])\n"
            "from gateway.settings import GatewaySettings\n"
            "from rpcfleet.commands.gateway import serving_app\n"
            "serving_app(GatewaySettings())\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'workers', 'numpy', 'httpx', 'psycopg', 'psycopg_pool', "
            "'rpcfleet.commands.up'}))\n"
            "print('pydantic.v1' in sys.modules)\n"
            "from pydantic.v1 import BaseModel\n"
            "print(sorted(m for m in sys.modules if m.startswith('rpcfleet.commands.')))\n"
            "from fastapi.openapi.models import OpenAPI\n"
            "print(OpenAPI.__pydantic_complete__)\n"
            "OpenAPI(openapi='3.1.0', info={'title': 't', 'version': '1'})\n"
            "print(OpenAPI.__pydantic_complete__)")
    # options: the settings-driven flags every command shares
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "False"
    assert out[2] == "['rpcfleet.commands.gateway', 'rpcfleet.commands.options']"
    assert out[3:5] == ["False", "True"]  # built at its first use, not at import
