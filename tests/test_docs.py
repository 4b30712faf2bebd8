"""Model cards (docs/models/<name>.md): one per registered model, each with the same sections,
and each card of a model with a golden names the code the golden was written from.

Section scheme: a paragraph starting with a bold header at the start of a line, in this order:
  **Reference.**  **Proven equal**  **Not proven.**  **Deliberate deviations.**
A model without a reference implementation says so: its Reference paragraph starts with
"No reference", and "**Tested instead**" (what its tests check) takes the place of
"**Proven equal**". A model with a golden in tests/golden_ref/ has a reference; one without
has none.
"""

import json
import re
from pathlib import Path

import pytest

from models import list_models

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "docs" / "models"
GOLDEN = ROOT / "tests" / "golden_ref"
HEADER = re.compile(r"^\*\*(Reference|Proven equal|Tested instead|Not proven|Deliberate deviations)\b[.]?\*\*(.*)$",
                    re.MULTILINE)
WITH_REFERENCE = ["Reference", "Proven equal", "Not proven", "Deliberate deviations"]
WITHOUT_REFERENCE = ["Reference", "Tested instead", "Not proven", "Deliberate deviations"]
# msabench paths a card may cite (`models/...` is left out: reference repositories have their own)
REPO_PATH = re.compile(r"`((?:tests|tools|docs|bench)/[^`\s]*)`")


def card(name: str) -> str:
    return (CARDS / f"{name}.md").read_text()


def mentions(text: str, token: str) -> bool:
    """`token` appears as a whole: not as the start of a longer name, URL or version."""
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-]|\.\w)", text) is not None


def golden(name: str) -> dict | None:
    path = GOLDEN / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_every_registered_model_has_a_card_and_every_card_a_model():
    models = set(list_models())
    cards = {p.stem for p in CARDS.glob("*.md")}
    assert models - cards == set(), f"registered models without a card in docs/models/: {sorted(models - cards)}"
    assert cards - models == set(), f"cards for no registered model: {sorted(cards - models)}"


@pytest.mark.parametrize("name", list_models())
def test_card_has_the_sections_in_order(name):
    text = card(name)
    assert text.startswith("# "), f"{name}.md: the first line is the model's title"
    headers = HEADER.findall(text)
    found = [h for h, _ in headers]
    no_reference = any(h == "Reference" and rest.strip().startswith("No reference") for h, rest in headers)
    expected = WITHOUT_REFERENCE if no_reference else WITH_REFERENCE
    assert found == expected, f"{name}.md sections {found}, expected {expected}"
    if golden(name) is not None:
        assert not no_reference, f"{name} has a golden in tests/golden_ref/ but its card says 'No reference'"
    else:
        assert no_reference, (f"{name} has no golden in tests/golden_ref/: its card's Reference paragraph "
                              "starts with 'No reference' and 'Tested instead' replaces 'Proven equal'")


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.json")))
def test_card_names_the_code_its_golden_was_written_from(name):
    ref = golden(name)
    assert ref is not None and ref.get("repository"), f"golden_ref/{name}.json names no repository"
    assert ref.get("commit") or ref.get("version"), f"golden_ref/{name}.json names neither a commit nor a version"
    text = card(name)
    assert mentions(text, ref["repository"]), f"{name}.md does not name the golden's repository {ref['repository']}"
    if ref.get("commit"):
        commit = ref["commit"].lower()
        cited = {h.lower() for h in re.findall(r"(?<![0-9a-fA-F])[0-9a-fA-F]{7,40}(?![0-9a-fA-F])", text)}
        assert any(commit.startswith(h) for h in cited), f"{name}.md does not name the golden's commit {commit[:7]}"
    else:
        assert mentions(text, ref["version"]), f"{name}.md does not name the golden's version {ref['version']}"
    assert f"tests/golden_ref/{name}." in text, f"{name}.md does not point at its golden"


@pytest.mark.parametrize("name", list_models())
def test_card_points_only_at_what_the_repository_has(name):
    text = card(name)
    for outside in ("specs/", "§", "/work/"):
        assert outside not in text, f"{name}.md cites {outside!r}: a document users do not have"
    for path in REPO_PATH.findall(text):
        assert list(ROOT.glob(path.rstrip("/*.") + "*")), f"{name}.md names `{path}`, which is not in the repository"


def test_the_your_model_guide_shows_the_example_file_and_its_check_model_output():
    """docs/your-model.md quotes the example plugin's file verbatim, and the checklist
    `check-model` prints for it (run here, in a fresh process, as the guide says)."""
    import subprocess
    import sys

    guide = (ROOT / "docs" / "your-model.md").read_text()
    path = "examples/msabench-example/msabench_example/mean_pool.py"
    block = re.search(rf"<!-- your-model: {re.escape(path)} -->\n```python\n(.*?)```", guide, re.DOTALL)
    assert block is not None and block.group(1) == (ROOT / path).read_text(), "docs/your-model.md: model block != file"
    command = re.search(r"```bash\n(python -m bench check-model .*?)\n```", guide)
    assert command is not None and path in command.group(1)
    out = subprocess.run([sys.executable, *command.group(1).split()[1:]], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    assert f"```\n{out.stdout}```" in guide, f"docs/your-model.md: check-model output differs:\n{out.stdout}"
