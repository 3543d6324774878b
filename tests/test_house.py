"""The house rules, checked: the layer contract (import-linter) and the size of modules and
functions (README, "Architecture")."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]
CODE_DIRS = sorted({d for d in PACKAGE_DIRS.values() if d != "example_graphs"})

MAX_MODULE_LINES = 600
# Lines of code of a function, from after its docstring to its end: numpydoc docstrings are
# required and long, and must not be cut to fit.
MAX_FUNCTION_LINES = 80
# Exceptions, each argued where the function is.
ALLOWED_LONG: dict[str, int] = {}


def _package_tree(tmp_path: Path) -> Path:
    """A real ``starloom`` folder of symlinks to the code folders.

    The editable install maps ``starloom.*`` to the folders through an import hook, which
    import-linter's static analysis cannot follow.
    """
    pkg = tmp_path / "starloom"
    pkg.mkdir()
    for name, folder in PACKAGE_DIRS.items():
        (pkg / name.split(".", 1)[1]).symlink_to(ROOT / folder, target_is_directory=True)
    return tmp_path


def test_layer_contract_holds(tmp_path):
    """A wrong import (science library -> engine, engine -> nodes, Qt outside the editor,
    anything -> CLI) fails here, and so in CI."""
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.fail("lint-imports (import-linter) is not installed: pip install -e '.[dev]'")
    env = dict(os.environ, PYTHONPATH=str(_package_tree(tmp_path)))
    res = subprocess.run([exe, str(ROOT / "pyproject.toml"), "--no-cache"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout and "BROKEN" not in res.stdout


def test_layer_contract_catches_a_wrong_import(tmp_path):
    """The contract is live: an upward import added to the science library breaks it."""
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable))
    tree = tmp_path / "tree"
    pkg = tree / "starloom"
    pkg.mkdir(parents=True)
    for name, folder in PACKAGE_DIRS.items():
        shutil.copytree(ROOT / folder, pkg / name.split(".", 1)[1],
                        ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "astro" / "errors.py").write_text(
        (pkg / "astro" / "errors.py").read_text() + "\nfrom starloom.graph_runtime import run\n")
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run([exe, str(ROOT / "pyproject.toml"), "--no-cache"],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "starloom.astro.errors -> starloom.graph_runtime.run" in res.stdout


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0]
            has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                       and isinstance(first.value.value, str))
            start = first.end_lineno + 1 if has_doc and len(node.body) > 1 else node.lineno
            yield node, node.end_lineno - start + 1


def test_modules_and_functions_stay_small():
    too_long = []
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).glob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text()
            if len(text.splitlines()) > MAX_MODULE_LINES:
                too_long.append(f"{rel}: {len(text.splitlines())} lines")
            for fn, n in _functions(ast.parse(text)):
                if n > ALLOWED_LONG.get(f"{rel}::{fn.name}", MAX_FUNCTION_LINES):
                    too_long.append(f"{rel}:{fn.lineno} {fn.name}: {n} lines of code")
    assert not too_long, "\n".join(too_long)
