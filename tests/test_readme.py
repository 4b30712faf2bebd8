"""The README's setup commands are the ones CI runs."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Setup and test", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_them():
    commands = readme_setup_commands()
    assert len(commands) == 2, commands
    install, test = commands
    assert "constraints.txt" in install and "pytest" in test
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in ci and test in ci
    assert ci.index(install) < ci.index(test)


def test_constraints_pin_cpu_torch():
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", pins, re.M)
    assert re.search(r"^transformers==4\.", pins, re.M)


def test_cli_help_is_fast_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "run" in out.stdout and "examples" in out.stdout
    # heavy imports happen inside commands only
    probe = "import sys, bench.cli; bench.cli.build_parser(); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "False", res.stderr


def test_readme_model_table_lists_every_registered_model():
    from models import list_models

    text = (ROOT / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`") for line in text.splitlines() if line.startswith("| `")}
    missing = [m for m in list_models() if m not in rows]
    assert not missing, f"README's model table lacks {missing}"
