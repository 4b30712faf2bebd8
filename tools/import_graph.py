"""The import graph of bench/ and models/, read with `ast` (nothing is imported).

    python tools/import_graph.py          # package-level edges, then the rule violations
    python tools/import_graph.py --all    # every module-level edge

An edge is an absolute import anywhere in a file (lazy ones inside functions included), an
`importlib.import_module("...")` call, or a "module:attr" string naming a bench/models module.
tests/test_imports.py asserts the rules below hold.
"""

import ast
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "models")
# what model files and layers may import from models/ (besides models/layers/); any other
# models/*.py but models/__init__.py is a model file
MODEL_SHARED = {"models.base", "models.registry", "models.protocol", "models.constants"}


class Edge(NamedTuple):
    """`source` (file:line) refers to module `target`, importing `names` from it."""
    source: str
    line: int
    importer: str
    target: str
    names: tuple[str, ...]


def module_name(path: Path, root: Path = ROOT) -> str:
    """bench/data/base.py -> bench.data.base; models/__init__.py -> models."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _string_target(node: ast.Constant) -> str | None:
    """'bench.metrics:METRICS' or 'bench.metrics' (a whole dotted module path) -> the module."""
    if not isinstance(node.value, str) or " " in node.value:
        return None
    module = node.value.split(":")[0]
    return module if _ours(module) and "." in module and module.replace(".", "").replace("_", "").isalnum() else None


def _from_edges(node: ast.ImportFrom, importer: str, is_package: bool, root: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names) of one `from ... import ...`; `from models import confede` names models.confede."""
    base = importer if is_package else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    module = ".".join(p for p in (base if node.level else "", node.module or "") if p)
    if not _ours(module):
        return []
    folder = root.joinpath(*module.split("."))
    subs = [a.name for a in node.names if (folder / f"{a.name}.py").is_file() or (folder / a.name).is_dir()]
    rest = tuple(a.name for a in node.names if a.name not in subs)
    return [(f"{module}.{s}", ()) for s in subs] + ([(module, rest)] if rest else [])


def file_edges(path: Path, root: Path = ROOT) -> list[Edge]:
    """Every reference from one file to a bench/models module."""
    rel, importer = str(path.relative_to(root)), module_name(path, root)
    edges = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            found = _from_edges(node, importer, path.name == "__init__.py", root)
            edges += [Edge(rel, node.lineno, importer, module, names) for module, names in found]
        elif isinstance(node, ast.Import):
            edges += [Edge(rel, node.lineno, importer, a.name, ()) for a in node.names if _ours(a.name)]
        elif isinstance(node, ast.Constant) and (target := _string_target(node)):
            names = (node.value.split(":")[1],) if ":" in node.value else ()
            edges.append(Edge(rel, node.lineno, importer, target, names))
    return edges


def all_edges(root: Path = ROOT) -> list[Edge]:
    """The edges of every module under bench/ and models/."""
    return [e for pkg in PACKAGES for path in sorted((root / pkg).rglob("*.py")) for e in file_edges(path, root)]


def is_model_file(module: str) -> bool:
    """models/<name>.py other than the shared modules (models/layers/ is shared too)."""
    return module.count(".") == 1 and module.startswith("models.") and module not in MODEL_SHARED


def _model_may_import(target: str) -> bool:
    return not target.startswith("models") or target in MODEL_SHARED or target.startswith("models.layers")


def violations(edges: list[Edge]) -> dict[str, list[Edge]]:
    """The rules: bench -> models only; model files import only the shared modules and layers;
    no module imports another's private names."""
    return {
        "models imports bench": [e for e in edges if e.importer.startswith("models") and e.target.startswith("bench")],
        "model file or layer imports models/ beyond base, registry, protocol, constants, layers": [
            e for e in edges if (is_model_file(e.importer) or e.importer.startswith("models.layers"))
            and not _model_may_import(e.target) and e.target != e.importer],
        "private name imported from another module": [
            e for e in edges if any(n.startswith("_") and not n.startswith("__") for n in e.names)],
    }


def package_edges(edges: list[Edge]) -> dict[tuple[str, str], int]:
    """(importer package, target package) -> how many references, across packages only."""
    counts: dict[tuple[str, str], int] = {}
    for e in edges:
        key = (e.importer.split(".")[0], e.target.split(".")[0])
        if key[0] != key[1]:
            counts[key] = counts.get(key, 0) + 1
    return counts


def render(edges: list[Edge], every: bool = False) -> str:
    """Package edges (or every module edge), then each rule with its violations."""
    lines = ["package edges:"] + [f"  {a} -> {b}  ({n} references)" for (a, b), n in sorted(package_edges(edges).items())]
    if every:
        pairs = sorted({(e.importer, e.target) for e in edges if e.importer != e.target})
        lines += ["module edges:"] + [f"  {a} -> {b}" for a, b in pairs]
    for rule, bad in violations(edges).items():
        lines.append(f"{rule}: {len(bad) or 'none'}")
        lines += [f"  {e.source}:{e.line}: {e.importer} -> {e.target} {', '.join(e.names)}".rstrip() for e in bad]
    return "\n".join(lines)


if __name__ == "__main__":
    graph = all_edges()
    print(render(graph, every="--all" in sys.argv))
    sys.exit(1 if any(violations(graph).values()) else 0)
