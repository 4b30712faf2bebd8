"""Dependencies point one way: bench -> models, never back; a model file imports only
models/base.py, models/registry.py, models/protocol.py and models/layers/; no module imports
another's private names. The graph comes from `ast` (`python tools/import_graph.py` prints it)."""

import importlib.util
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)

RULES = list(graph.violations([]))


@pytest.fixture(scope="module")
def edges():
    return graph.all_edges()


def test_the_walk_reads_every_module_and_its_lazy_and_string_references(edges):
    importers = {e.importer for e in edges}
    assert {"bench.train", "bench.cli", "models.registry", "models.mult"} <= importers
    pairs = {(e.importer, e.target) for e in edges}
    assert ("bench.train", "models.base") in pairs  # top-level import
    assert ("bench.cli.run", "models") in pairs  # inside a function
    assert ("models.registry", "models.pase") in pairs  # a "module:attr" string (PaSEConfig.sgm_mode choices)


@pytest.mark.parametrize("rule", RULES)
def test_no_violation(edges, rule):
    assert not graph.violations(edges)[rule], "\n" + graph.render(edges)


def test_package_level_edges_point_one_way(edges):
    assert set(graph.package_edges(edges)) == {("bench", "models")}, "\n" + graph.render(edges)


FORBIDDEN = {  # file -> source: each one breaks exactly one rule
    "models/mult.py": "from bench.metrics import compute_metrics\n",
    "models/base.py": 'CHOICES = {"x": "bench.optim:OPTIMIZERS"}\n',
    "models/pase.py": "def f():\n    from models.mult import MulT\n",
    "models/glomo.py": "from models import self_mm\n",
    "models/layers/blocks.py": "import models.confede\n",
    "bench/perf.py": "from bench.train import _private_helper\n",
}
RULE_OF = {"models/mult.py": 0, "models/base.py": 0, "models/pase.py": 1, "models/glomo.py": 1,
           "models/layers/blocks.py": 1, "bench/perf.py": 2}


@pytest.mark.parametrize("path", FORBIDDEN)
def test_each_forbidden_form_is_found(tmp_path, path):
    """A copy of the tree with one forbidden reference added: its rule reports it, with its line."""
    for pkg in graph.PACKAGES:
        for src in (ROOT / pkg).rglob("*.py"):
            dst = tmp_path / src.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(src.read_text())
    target = tmp_path / path
    target.write_text(target.read_text() + textwrap.dedent(FORBIDDEN[path]))
    found = graph.violations(graph.all_edges(tmp_path))
    rule = RULES[RULE_OF[path]]
    assert [e.source for e in found[rule]] == [path], graph.render(graph.all_edges(tmp_path))
    assert all(not bad for r, bad in found.items() if r != rule)
