"""The README stays true to the code: every setting is documented, the commands exist."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from gateway.settings import GatewaySettings
from rpcfleet.cli import COMMANDS
from rpcfleet.settings import OperatorSettings
from workers.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _documented_settings() -> set[str]:
    table = README.split("<!-- settings-table -->")[1].split("<!-- /settings-table -->")[0]
    return set(re.findall(r"`RPCFLEET_([A-Z_]+)`", table))


def test_every_setting_is_in_the_readme_settings_table() -> None:
    documented = _documented_settings()
    fields = {name.upper() for name in (*GatewaySettings.model_fields,
                                        *WorkerSettings.model_fields,
                                        *OperatorSettings.model_fields)}
    assert fields - documented == set(), "settings missing from the README"
    assert documented - fields == set(), "the README documents settings that do not exist"


def test_every_rpcfleet_variable_the_code_names_is_a_documented_setting() -> None:
    """Settings are read only through the layers' settings classes: a variable named anywhere
    else in the code (read by hand, written for a child) is one of them, or the table lies."""
    named = set()
    for package in ("gateway", "workers", "transport", "protocol", "rpcfleet"):
        for source in (REPO / package).rglob("*.py"):
            named |= set(re.findall(r"RPCFLEET_([A-Z][A-Z_]*[A-Z])\b", source.read_text()))
    # Not rpcfleet settings: the example pool's own size (examples/vectors.py, set by
    # `rpcfleet up --cache-mb`), and RPCFLEET_NAME, the placeholder of a docstring.
    internal = {"EXAMPLE_CACHE_MB", "NAME"}
    assert named - _documented_settings() - internal == set()


def test_the_readme_commands_go_through_the_bootstrap_script_and_ci_calls_the_test_one() -> None:
    assert "./run up" in README and "./run test" in README
    assert (REPO / "run").stat().st_mode & 0o111
    assert "./run test" in (REPO / ".ci" / "run").read_text()


def test_every_cli_command_the_readme_names_exists() -> None:
    named = set(re.findall(r"rpcfleet (\w+)", README)) & {
        "up", "broker", "gateway", "worker", "workers", "prefetch", "processes", "retire",
        "jobs"}
    assert named <= set(COMMANDS)


def test_the_reference_docs_link_only_inside_the_repo_and_every_link_resolves() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert len(pages) >= 5
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                # Only this machine's addresses, shown as examples: the docs depend on no page
                # outside the repo.
                host = urlsplit(target).hostname
                assert host in ("localhost", "127.0.0.1"), f"{page.name} links out: {target}"
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(REPO), f"{page.name} links outside the repo: {target}"
            assert resolved.exists(), f"{page.name} links to a missing {target}"


def test_the_error_table_of_the_api_docs_names_every_error_code() -> None:
    from protocol import ErrorCode

    api = (REPO / "docs" / "http-api.md").read_text()
    table = api.split("## Errors")[1].split("## ")[0]
    documented = set(re.findall(r"^\| `(\w+)`", table, re.MULTILINE))
    documented |= set(re.findall(r"/ `(\w+)`", table))
    job_outcomes = {ErrorCode.CANCELLED, ErrorCode.EXPIRED, ErrorCode.MAX_ATTEMPTS}
    assert {str(code) for code in ErrorCode} - {str(c) for c in job_outcomes} <= documented


def test_every_docs_section_the_code_points_to_exists() -> None:
    """A log line, a warning or a docstring that sends the reader to `docs/X.md, "Section"`
    names a heading that page has (the copy watch's warning once pointed at a heading lost in an
    edit)."""
    pointers = set()
    for package in ("gateway", "workers", "transport", "protocol", "rpcfleet"):
        for source in (REPO / package).rglob("*.py"):
            text = source.read_text().replace('\\"', '"')
            pointers |= {(source.name, page, section) for page, section in
                         re.findall(r"docs/([a-z-]+\.md),?\s+\"([^\"]+)\"", text)}
    assert pointers, "no pointer found: the pattern went stale"
    for source, page, section in sorted(pointers):
        text = (REPO / "docs" / page).read_text()
        # A heading, or a paragraph's bold lead ("**What a consumer costs**: ...").
        headings = [line.lstrip("#").strip() for line in text.splitlines()
                    if line.startswith("#")] + re.findall(r"^\*\*(.+?)\*\*", text, re.M)
        assert any(section.strip("`") in heading.replace("`", "") for heading in headings), (
            f"{source} points to {page}, \"{section}\": no such heading")
