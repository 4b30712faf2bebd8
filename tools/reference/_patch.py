"""Build-time patches of reference code that hard-codes widths: a class re-defined from its
own source with exact literal replacements, each required to match (and described, so the
golden records it). The reference files on disk are never changed."""

from __future__ import annotations

import inspect
import sys
import textwrap
import types
from pathlib import Path
from typing import Any


def patched_class(module: types.ModuleType, name: str,
                  replacements: list[tuple[str, str, int]]) -> tuple[type, list[str]]:
    """`module.name` re-executed from its source (in the module's namespace) with each
    (old, new, count) replaced; fails if `old` does not occur exactly `count` times.
    Returns the patched class and one description per replacement."""
    source = textwrap.dedent(inspect.getsource(getattr(module, name)))
    notes = []
    for old, new, count in replacements:
        found = source.count(old)
        if found != count:
            raise RuntimeError(f"{module.__file__}: class {name}: '{old}' occurs {found} times, expected {count}")
        source = source.replace(old, new)
        notes.append(f"{Path(module.__file__ or '?').name} {name}: '{old}' -> '{new}' ({count}x)")
    namespace: dict[str, Any] = vars(module)
    exec(compile(source, f"<patched {module.__name__}.{name}>", "exec"), namespace)  # noqa: S102
    return namespace[name], notes


def module_from_functions(name: str, path: Path, functions: tuple[str, ...], extra: dict[str, Any]) -> types.ModuleType:
    """A module `name` holding only the top-level `functions` of the file at `path` (their own
    source, run in a namespace with torch and F) plus `extra`: for files whose other
    definitions need packages absent here (Triton kernels next to their PyTorch references)."""
    import ast

    import torch
    import torch.nn.functional as F

    tree = ast.parse(path.read_text())
    module = types.ModuleType(name)
    module.__file__ = str(path)
    vars(module).update({"torch": torch, "F": F, **extra})
    found: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in functions]
    names = {n.name for n in found if isinstance(n, ast.FunctionDef)}
    if names != set(functions):
        raise RuntimeError(f"{path}: functions {sorted(set(functions) - names)} not found")
    exec(compile(ast.Module(body=found, type_ignores=[]), str(path), "exec"), vars(module))  # noqa: S102
    sys.modules[name] = module
    return module
