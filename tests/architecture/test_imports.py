"""The tree's own rules: the import layers (pyproject.toml's import-linter contracts) hold, and
no test imports another test module: what tests share lives in support/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_test_module_imports_another() -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for name in _imported_modules(path)
        if name == "tests" or name.startswith("tests.")
    }
    assert not offenders, sorted(offenders)


def test_tests_mirror_the_code() -> None:
    """Every test lives in a folder named after what it tests; none at the top level."""
    packages = {p.name for p in (ROOT / "app").iterdir() if (p / "__init__.py").exists()}
    allowed = packages | {"workers", "schemas", "data", "e2e", "faults", "architecture"}
    folders = {p.parent.name for p in (ROOT / "tests").rglob("test_*.py")}
    assert "tests" not in folders, "a test module at the top of tests/"
    assert folders <= allowed, sorted(folders - allowed)
