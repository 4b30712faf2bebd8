"""CI lints and type-checks the library: ruff over bench/ and models/ (here and in .ci/run), mypy in .ci/run;
no library function is longer than MAX_FUNCTION_LINES."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60  # def line to last line, docstring and nested functions included
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


def test_ci_runs_ruff_and_mypy_after_the_install_and_before_the_tests():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    install = next(i for i, line in enumerate(ci) if line.startswith("pip install"))
    tests = next(i for i, line in enumerate(ci) if "pytest" in line)
    for check in ("ruff check bench models", "mypy"):
        assert check in ci, f".ci/run lacks '{check}'"
        assert install < ci.index(check) < tests, f".ci/run runs '{check}' outside install .. pytest"


def test_mypy_config_checks_the_library_without_global_ignores():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["files"] == ["bench", "models"]
    assert "ignore_missing_imports" not in mypy and "disable_error_code" not in mypy


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -e '.[dev]')")
def test_ruff_finds_nothing_in_the_library():
    out = subprocess.run([RUFF, "check", "bench", "models"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_library_function_is_longer_than_the_limit():
    long = []
    for path in sorted([*ROOT.glob("bench/**/*.py"), *ROOT.glob("models/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into helpers): " + ", ".join(long)
