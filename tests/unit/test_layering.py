"""The dependency rule, read from the source: what each layer may import (README.md, layout).

``schemas`` <- ``execution`` <- ``adapters`` <- ``streams``/``agents``; ``devstack``, ``venues``, ``bench``
and ``tests`` sit on top. The core imports no I/O library, so it runs the same under a replayed clock
and in unit tests; production code never imports the developer tools or the simulators, so a
production install (without the ``embedded`` extra) runs. Every import statement counts, also the
ones inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("schemas", "execution", "adapters", "streams", "agents")
DEV_ONLY = ("devstack", "venues", "bench", "tests")
IO_LIBRARIES = ("faust", "mode", "aiokafka", "asyncpg", "redis", "httpx", "ccxt", "ib_async", "aiohttp")
CORE_FORBIDDEN = ("adapters", "streams", "agents", "devstack", "venues", *IO_LIBRARIES)


def modules(package: str, root: Path = ROOT) -> list[Path]:
    return sorted((root / package).rglob("*.py"))


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved, by line."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, node.module] if node.module else base)
            if node.module is None:  # ``from . import x``: each x is a module of that package
                found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, name))
    return sorted(found)


def violations(packages: tuple[str, ...], forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    found = []
    for package in packages:
        for path in modules(package, root):
            for line, name in imported(path, root):
                if name.split(".")[0] in forbidden:
                    found.append(f"{path.relative_to(root)}:{line} imports {name}")
    return found


def test_the_core_imports_no_outer_layer_and_no_io_library() -> None:
    assert modules("execution"), "no modules found: the test would pass on nothing"
    assert violations(("execution",), CORE_FORBIDDEN) == []


@pytest.mark.parametrize("package", PRODUCTION)
def test_production_code_imports_no_dev_tool_simulator_bench_or_test(package: str) -> None:
    assert modules(package), "no modules found: the test would pass on nothing"
    assert violations((package,), DEV_ONLY) == []


def test_the_scanner_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The rule is only as good as the import reader: top-level, lazy, aliased and relative imports."""
    source = tmp_path / "execution" / "sub" / "mod.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "import aiokafka.admin as admin\n"
        "from decimal import Decimal\n"
        "from devstack.stack import spawn\n"
        "def lazy():\n"
        "    from venues import binance\n"
        "from . import sibling\n"
        "from ..fills import FillState\n"
    )
    names = {name for _, name in imported(source, tmp_path)}
    assert names == {"aiokafka.admin", "decimal", "devstack.stack", "venues", "execution.sub.sibling",
                     "execution.fills"}
    assert violations(("execution",), CORE_FORBIDDEN, tmp_path) == [
        "execution/sub/mod.py:1 imports aiokafka.admin",
        "execution/sub/mod.py:3 imports devstack.stack",
        "execution/sub/mod.py:5 imports venues",
    ]
