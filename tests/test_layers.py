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
    pydantic.v1 (1.5 MiB, FastAPI's check for v1 models: it is left importable after)."""
    import subprocess
    import sys

    code = ("import sys, rpcfleet.cli\n"
            "rpcfleet.cli.build_parser(['gateway'])\n"
            "import gateway.app\n"
            "gateway.app.app_from_env()\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'workers', 'numpy', 'httpx', 'psycopg', 'psycopg_pool', "
            "'rpcfleet.commands.up'}))\n"
            "print('pydantic.v1' in sys.modules)\n"
            "from pydantic.v1 import BaseModel\n"
            "print(sorted(m for m in sys.modules if m.startswith('rpcfleet.commands.')))")
    # options: the settings-driven flags every command shares
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "False"
    assert out[2] == "['rpcfleet.commands.gateway', 'rpcfleet.commands.options']"
