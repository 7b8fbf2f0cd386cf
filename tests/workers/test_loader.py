"""`rpcfleet worker MODULE:POOL`: a target that names no pool says what to do about it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from workers import Pool, PoolNotFound, load_pool

MODULE = '''
from workers import Pool
pool = Pool("catalog")
admin = Pool("catalog_admin")
version = 3
'''


@pytest.fixture
def catalog(tmp_path: Path) -> tuple[Path, str]:
    """A folder with a pool module of a name no other test uses (imports are cached)."""
    name = f"catalog_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    return tmp_path, name


def test_a_module_outside_the_app_dir_names_the_folder_searched_and_the_option(
    catalog: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder, name = catalog
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with pytest.raises(PoolNotFound) as missing:
        load_pool(f"{name}:pool", str(elsewhere))
    message = str(missing.value)
    assert f"no {name!r} in {elsewhere}" in message
    assert "--app-dir" in message
    assert isinstance(load_pool(f"{name}:pool", str(folder)), Pool)


def test_a_typo_in_the_attribute_lists_the_pools_the_module_has(
    catalog: tuple[Path, str]
) -> None:
    folder, name = catalog
    with pytest.raises(PoolNotFound) as typo:
        load_pool(f"{name}:pol", str(folder))
    assert str(typo.value) == (f"module {name!r} has no attribute 'pol'; "
                               "it has 'admin', 'pool'")
    with pytest.raises(PoolNotFound) as not_a_pool:
        load_pool(f"{name}:version", str(folder))
    assert "is a int, not a workers.Pool; it has 'admin', 'pool'" in str(not_a_pool.value)


def test_a_module_whose_own_import_fails_says_so(tmp_path: Path) -> None:
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import no_such_dependency_xyz\n")
    with pytest.raises(PoolNotFound) as broken:
        load_pool(f"{name}:pool", str(tmp_path))
    assert "No module named 'no_such_dependency_xyz'" in str(broken.value)
    assert "install it" in str(broken.value)


def test_a_module_that_raises_while_imported_says_what_and_where(tmp_path: Path) -> None:
    name = f"raising_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("x = 1\nraise RuntimeError('no config file')\n")
    with pytest.raises(PoolNotFound) as raised:
        load_pool(f"{name}:pool", str(tmp_path))
    assert str(raised.value) == (f"importing {name!r} raised RuntimeError: no config file "
                                 f"({tmp_path / f'{name}.py'}:2)")


def test_a_method_rpcfleet_cannot_call_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    name = f"badsig_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from workers import Pool\npool = Pool('x')\n@pool.method\ndef get(p: dict) -> dict:\n"
        "    return p\n")
    with pytest.raises(PoolNotFound) as bad:
        load_pool(f"{name}:pool", str(tmp_path))
    assert str(bad.value).startswith(f"{name!r} defines a method rpcfleet cannot call: handler "
                                     "'get' takes ['p']")
