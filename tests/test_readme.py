"""The README is true and stays true: its setup commands are CI's, its claims match the
registry and the CLI, its example table and figure come from committed files that a command
regenerates, and every command it shows that needs no external data runs."""

import argparse
import hashlib
import importlib.util
import os
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme() -> str:
    return README.read_text()


def _tool():
    spec = importlib.util.spec_from_file_location("readme_example", ROOT / "tools" / "readme_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_setup_commands() -> list[str]:
    section = readme().split("## Setup and test", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_them():
    commands = readme_setup_commands()
    assert len(commands) == 2, commands
    install, test = commands
    assert "constraints.txt" in install and "pytest" in test
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in ci and test in ci
    assert ci.index(install) < ci.index(test)


def test_constraints_pin_torch_and_readme_says_how_to_get_the_cpu_build():
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", pins, re.MULTILINE)
    assert re.search(r"^transformers==4\.", pins, re.MULTILINE)
    # the pin alone gives the CUDA build on Linux: the README names PyTorch's CPU wheel index
    assert "https://download.pytorch.org/whl/cpu" in readme()


def test_cli_help_is_fast_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0 and "run" in out.stdout and "examples" in out.stdout
    # heavy imports happen inside commands only
    probe = "import sys, bench.cli; bench.cli.build_parser(); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.stdout.strip() == "False", res.stderr


# -- claims checked against the registry and the CLI ------------------------------------------

def model_table() -> dict[str, list[str]]:
    """{model: its row's cells} of the README's model table."""
    rows = [line.split("|")[1:-1] for line in readme().splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): [c.strip() for c in cells] for cells in rows}


def test_readme_model_table_lists_every_registered_model_with_its_presets():
    from models import get_model_entry, list_models

    table = model_table()
    assert sorted(table) == list_models(), "README's model table and the registry disagree"
    for name, cells in table.items():
        entry = get_model_entry(name)
        assert set(re.findall(r"`(\w+)`", cells[2])) == set(entry.preset_names()), f"README presets of {name}"
        if "(default)" in cells[2]:
            assert f"`{entry.default_preset}` (default)" in cells[2], f"README default preset of {name}"


def test_readme_model_table_names_each_model_and_paper_as_registered():
    """Each row's description opens with the model's registered display name (its short form) and
    cites its registered paper's venue and year; the harness's own rows cite none."""
    from models import get_model_entry

    for name, cells in model_table().items():
        entry = get_model_entry(name)
        if not entry.paper:
            assert not re.search(r"\([A-Z][^()]* (19|20)\d\d\)", cells[1]), f"README cites a paper for {name}"
            continue
        assert cells[1].startswith(entry.display_name.split(" (")[0] + " "), f"README row of {name}: display name"
        venue = entry.paper.rsplit(", ", 1)[-1]  # "Tsai et al., ACL 2019" -> "ACL 2019"
        assert f"({venue})" in cells[1], f"README row of {name} does not cite ({venue})"


def model_names_in(text: str) -> set[str]:
    """Registered models whose display name (without its qualifier) appears in `text`."""
    from bench.report import display_name
    from models import list_models

    generic = {"bert_text", "late_fusion"}  # "BERT", "Late fusion": words, not only model names
    names = {m: display_name(m, m).split(" (")[0] for m in list_models() if m not in generic}
    return {m for m, shown in names.items() if re.search(rf"(?<![\w-]){re.escape(shown)}(?![\w-])", text)}


@pytest.mark.parametrize("where", ["README intro", "pyproject description"])
def test_summaries_do_not_enumerate_a_subset_of_the_models(where):
    """A summary names the headline model (PaSE) or every model, never a list that goes stale."""
    if where == "README intro":
        text = readme().split("\n## ", 1)[0]
    else:
        text = re.search(r'^description = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    named = model_names_in(text)
    assert named <= {"pase"} or named == model_names_in(" ".join(model_table()[m][1] for m in model_table())), \
        f"{where} names {sorted(named)}: name every model or none but PaSE"


def test_full_size_presets_on_synthetic_are_the_registry_s():
    from models import get_model_entry, list_models

    sentence = re.search(r"Full-size presets on `synthetic`[^:]*:(.*?)\.\n", readme(), re.DOTALL).group(1)
    claimed = {m: set(re.findall(r"`(\w+)`", ps)) for m, ps in re.findall(r"`(\w+)` \(([^)]*)\)", sentence)}
    actual = {m: set(get_model_entry(m).preset_names("synthetic")) - {"demo"} for m in list_models()}
    assert claimed == {m: p for m, p in actual.items() if p}


def parser_options() -> set[str]:
    """Every option string of every `bench` subcommand."""
    from bench.cli import build_parser

    found, todo = set(), [build_parser()]
    while todo:
        parser = todo.pop()
        for action in parser._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


PIP_OPTIONS = {"--no-deps", "--extra-index-url", "--index-url"}


def tool_options() -> set[str]:
    """The options the tools/ scripts declare (the README runs some of them)."""
    return {o for path in ROOT.glob("tools/**/*.py")
            for o in re.findall(r'add_argument\(\s*"(--[a-z][a-z0-9-]*)"', path.read_text())}


def test_every_option_the_readme_names_exists():
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", readme()))
    unknown = named - parser_options() - tool_options() - PIP_OPTIONS
    assert not unknown, f"README names options no command has: {sorted(unknown)}"


def test_every_set_key_the_readme_names_is_a_config_field():
    import dataclasses

    from models import get_model_entry, list_models

    fields = {f.name for m in list_models() for f in dataclasses.fields(get_model_entry(m).config_cls)}
    keys = set(re.findall(r"--set\s+(\w+)=", readme())) - {"key"}  # `--set key=value`: the form itself
    assert keys and not keys - fields, f"README sets keys no model has: {sorted(keys - fields)}"


def tracked_files() -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:  # not a git checkout (e.g. an sdist): what is on disk
        return {str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()}
    return set(out.stdout.splitlines())


def test_readme_cites_only_committed_files():
    cited = set(re.findall(r"(?<![\w/<>{}])((?:bench|models|reports|docs|sweeps|tools|tests|\.ci)/[\w./+-]*\.\w+)",
                           readme()))
    cited = {c for c in cited if not c.startswith("reports/contributions_")}  # what a README command writes
    missing = sorted(cited - tracked_files())
    assert cited and not missing, f"README cites files not in the repository: {missing}"


# -- no pointer to documents a user does not have ---------------------------------------------

# the maintainers' specification notes are not shipped; "paper §" / "supplement §" name public documents
UNSHIPPED = re.compile(
    r"specs?/|seed-baselines|baselines\.md|(?<!docs/models/)pase\.md|data-and-metrics|DESIGN|STYLE\.md|[\w-]+\.md §"
    r"|\b(?:spec|specs|specification|note)\s+§|\bthe note\b|\bnote's|\bdecisions? \d"
    r"|(?<!paper )(?<!supplement )(?<!paper's )§")
SHIPPED_TEXT = ["README.md", "pyproject.toml", "bench/**/*.py", "models/**/*.py", "sweeps/*.yaml", "tools/**/*.py",
                "tests/*.py", "examples/**/*.py"]
CHECKERS = {"tests/test_readme.py", "tests/test_docs.py"}  # they spell the forbidden forms out


def unshipped_references(root: Path) -> list[str]:
    hits = []
    for pattern in SHIPPED_TEXT:
        for path in sorted(root.glob(pattern)):
            if path.relative_to(root).as_posix() in CHECKERS:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if UNSHIPPED.search(line):
                    hits.append(f"{path.relative_to(root)}:{n}: {line.strip()[:120]}")
    return hits


def test_no_pointer_to_documents_users_do_not_have():
    hits = unshipped_references(ROOT)
    assert not hits, "cite the fact itself, or a file in the repository:\n" + "\n".join(hits)


@pytest.mark.parametrize("line", ["see specs/pase.md §4", "(baselines.md §4)", "data-and-metrics spec §7",
                                  "the note's §2.7", "the note's arithmetic", "README decision 7", "DESIGN §4",
                                  "pooled (§3.2)"])
def test_the_unshipped_pattern_catches_each_form(line):
    assert UNSHIPPED.search(line)


@pytest.mark.parametrize("line", ["paper §3.4, Algorithm 1", "supplement §2", "sweeps/smoke.yaml", "MMSA README",
                                  "docs/models/pase.md"])
def test_the_unshipped_pattern_spares_public_sources(line):
    assert not UNSHIPPED.search(line)


# -- the example table and figure --------------------------------------------------------------

def test_readme_example_block_is_the_committed_generated_file():
    path, body = _tool().readme_block(readme())
    assert path in tracked_files(), f"{path} is not committed"
    assert body.strip() == (ROOT / path).read_text().strip(), \
        f"README's example block differs from {path}: run `python tools/readme_example.py`"


def test_readme_example_tool_rewrites_only_the_block():
    tool = _tool()
    text = readme()
    changed = tool.with_block(text, "| new |\n")
    assert tool.readme_block(changed)[1] == "| new |\n"
    before, after = text.split("<!-- example-table")[0], text.split("<!-- /example-table -->")[1]
    assert changed.startswith(before) and changed.endswith(after)


def test_readme_names_the_commands_that_regenerate_its_table_and_figure():
    tool = _tool()
    for command in tool.COMMANDS + ["python -m bench figure contributions --model pase --out docs/img"]:
        assert f"`{command}`" in readme() or command in readme(), command
    image = re.search(r"!\[[^]]*\]\(([^)]+)\)", readme()).group(1)
    assert image.startswith("docs/img/") and image in tracked_files()


def copy_of_tracked_files(dest: Path) -> dict[str, str]:
    """Copy the repository's tracked files to `dest`; {path: sha256}."""
    digests = {}
    for rel in sorted(tracked_files()):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
            digests[rel] = hashlib.sha256(src.read_bytes()).hexdigest()
    return digests


def bench_env(copy: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(copy), "MPLBACKEND": "Agg"}


@pytest.mark.slow
def test_readme_example_is_what_its_commands_produce(tmp_path):
    """The README's commands, as written, reproduce the committed example table (~8 min on 2 CPUs)."""
    tool = _tool()
    copy = tmp_path / "repo"
    copy_of_tracked_files(copy)
    for command in tool.COMMANDS:
        command = command.replace("--out docs/example", f"--out {tmp_path / 'example'}")
        done = subprocess.run(command, shell=True, cwd=copy, env=bench_env(copy), capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    produced = (tmp_path / "example" / "table_synthetic.md").read_text().strip()
    committed = (ROOT / tool.SOURCE).read_text().strip()
    import torch

    if torch.backends.cpu.get_cpu_capability() != tool.CPU_CAPABILITY:
        # torch, oneDNN and MKL take other code paths on another vector width: the trained models differ
        # by float rounding, so only the table's shape can be compared here (rows and columns)
        shape = lambda t: [[c.strip() for c in ln.split("|")[1:2]] for ln in t.splitlines() if ln.startswith("|")]  # noqa: E731
        heads = lambda t: [ln for ln in t.splitlines() if not ln.startswith("|") or "MAE" in ln]  # noqa: E731
        assert shape(produced) == shape(committed) and \
            [" ".join(h.split()) for h in heads(produced)] == [" ".join(h.split()) for h in heads(committed)]
        pytest.skip(f"{tool.SOURCE} was made on a {tool.CPU_CAPABILITY} CPU, this one is "
                    f"{torch.backends.cpu.get_cpu_capability()}: its numbers are compared on {tool.CPU_CAPABILITY} only")
    assert produced == committed, f"{tool.SOURCE} is stale: regenerate it with the commands in tools/readme_example.py"


# -- every README command that needs no external data runs -------------------------------------

def readme_commands() -> list[str]:
    """Every command of the README's ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme(), re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s{2,}#", line)[0].strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


# commands that cannot run in a test, with the reason (first match wins)
EXCLUDED = {
    r"^pip install": "installs from the network; CI runs it verbatim (see the setup test above)",
    r"^python -m pytest": "the test suite itself",
    r"--data-root": "needs external data files (MOSI/MOSEI/IEMOCAP)",
    r"--datasets mosi|--dataset mosi": "reads MOSI results or studies, which need external data",
    r"--slurm-partition": "needs a Slurm cluster",
    r"^python -m bench perf --models all": "times every model for about 1.5 h on 2 CPUs; its output is the committed "
                                           "report the performance-table test checks",
}
# commands that train are bounded (argparse keeps an option's last value); the rest run as written
BOUNDS = {
    r"^python -m bench run (?!--help)": "--epochs 1 --seeds 1111 --quiet",
    r"^python -m bench tune (?!--show-space)": "--trials 2 --epochs 1 --no-final --quiet",
}


def excluded_reason(command: str) -> str | None:
    return next((why for pattern, why in EXCLUDED.items() if re.search(pattern, command)), None)


def bounded(command: str) -> str:
    extra = next((b for pattern, b in BOUNDS.items() if re.search(pattern, command)), None)
    return f"{command} {extra}" if extra else command


@pytest.fixture(scope="module")
def readme_session(tmp_path_factory):
    """Run the README's runnable commands in order, in a copy of the repository (so each reads
    what the ones before it wrote, and the real tree stays clean). {command: process}; the
    copy's path and its files' digests under None."""
    copy = tmp_path_factory.mktemp("readme") / "repo"
    digests = copy_of_tracked_files(copy)
    done = {}
    for command in readme_commands():
        if excluded_reason(command) is None:
            done[command] = subprocess.run(bounded(command), shell=True, cwd=copy, env=bench_env(copy),
                                           capture_output=True, text=True, timeout=900, check=False)
    return done, copy, digests


def test_readme_commands_are_all_classified():
    commands = readme_commands()
    runnable = [c for c in commands if excluded_reason(c) is None]
    assert len(runnable) >= 10 and "python -m bench run --models pase,mult" in runnable
    assert any(excluded_reason(c) for c in commands)


@pytest.mark.parametrize("command", [c for c in readme_commands() if excluded_reason(c) is None])
def test_readme_command_runs(readme_session, command):
    done, _, _ = readme_session
    assert done[command].returncode == 0, f"{bounded(command)}\n{done[command].stderr[-3000:]}"


def test_readme_commands_leave_tracked_files_unchanged(readme_session):
    _, copy, digests = readme_session
    changed = [rel for rel, digest in digests.items()
               if not (copy / rel).is_file() or hashlib.sha256((copy / rel).read_bytes()).hexdigest() != digest]
    assert not changed, f"the README's commands change tracked files: {changed}"


def test_readme_parameter_counts_are_built_counts():
    """The model table's first count per model is a count `bench ls` gives (bench/catalog.json,
    which tests/test_registry.py rebuilds on the meta device and compares)."""
    catalog = json.loads((ROOT / "bench" / "catalog.json").read_text())
    rows = [line for line in readme().splitlines() if re.match(r"\| `\w+` \|", line)]
    assert rows
    for line in rows:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        first = re.search(r"\d{1,3}(?:,\d{3})+", cells[-1])
        assert first, f"README model row {name}: no parameter count"
        built = {c for p in catalog["models"][name]["presets"].values() for c in p["counts"].values()}
        assert int(first[0].replace(",", "")) in built, f"README {name}: {first[0]} is not a count of its presets"


def test_readme_performance_table_is_the_committed_report():
    """The README's performance table is the table of the report `bench perf --markdown` wrote
    (reports/perf/cpu.md, committed with the command that regenerates it at its top)."""
    text = readme()
    blocks = list(re.finditer(r"<!-- perf-table: (?P<path>\S+) -->\n(?P<body>.*?)<!-- /perf-table -->", text, re.DOTALL))
    assert blocks, "README: no `<!-- perf-table: PATH -->` block"
    for match in blocks:
        report = (ROOT / match["path"]).read_text()
        assert report.split("```")[1].strip().startswith("python -m bench perf"), report[:300]  # its command first
        table = [line for line in report.splitlines() if line.startswith("|")]
        assert table and match["body"].strip().splitlines() == table, f"README's table of {match['path']} is not the report's"


def _perf_rows(report: str) -> dict[str, list[str]]:
    """A `bench perf` Markdown report's table: model -> its cells after the model column."""
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:]]
            for line in (ROOT / report).read_text().splitlines() if line.startswith("| ")}


def test_readme_msamba_figures_are_the_reports():
    """The README's MSAmba sentences (× floor, interval, verdict, the floor's range, the slowest step; the
    same run with the scan in PyTorch ops, and with glibc's own malloc settings) are
    reports/perf/cpu_msamba.md's, cpu_msamba_pytorch_scan.md's and cpu_msamba_system_malloc.md's rows."""
    rows = _perf_rows("reports/perf/cpu_msamba.md")
    floor_range, (msamba_max, ratio, interval) = rows["floor"][1], (rows["msamba"][1].split(" / ")[1], *rows["msamba"][2:4])
    text = " ".join(readme().split())
    assert f"is {ratio}× the floor (interval {interval.replace('-', '–')}): {rows['msamba'][5]}" in text
    assert f"the floor's own steps ranged {floor_range.replace(' / ', '–')} ms and one MSAmba step took {msamba_max} ms" in text
    for report, env, phrase in (("cpu_msamba_pytorch_scan.md", "MSABENCH_SCAN_KERNEL=off", "with the kernel"),
                                ("cpu_msamba_system_malloc.md", "MSABENCH_MALLOC=system", "with both as default")):
        other = _perf_rows(f"reports/perf/{report}")
        assert (f"floor {other['floor'][0]} ms, MSAmba {other['msamba'][0]} ms per step, {other['msamba'][2]}× "
                f"(interval {other['msamba'][3]}); {phrase}, floor {rows['floor'][0]} ms, MSAmba {rows['msamba'][0]} ms") in text
        assert f"\n{env} python -m bench perf --models msamba --steps 11 --markdown reports/perf/{report}\n" in \
            (ROOT / "reports/perf" / report).read_text()


# -- the throughput figures ---------------------------------------------------------------------

def test_readme_throughput_figures_are_the_measured_ones():
    """The README's wall times of the main command are reports/perf/throughput_main.json's, and the
    default --jobs rule is the faster setting there."""
    from bench.threads import CPU_CORES_PER_JOB

    rows = json.loads((ROOT / "reports/perf/throughput_main.json").read_text())["rows"]
    walls = {j: sorted(r["wall_s"] for r in rows if r["jobs"] == j) for j in ("1", "2")}
    text = " ".join(readme().split())
    for j, phrase in (("2", "as two single-thread workers"), ("1", "one run after another")):
        assert f"{walls[j][0]}–{walls[j][-1]} s {phrase}" in text, f"README: --jobs {j} figures {walls[j]}"
    faster = min(walls, key=lambda j: max(walls[j]))
    assert (faster == "2") == (CPU_CORES_PER_JOB == 1), "the default is not the faster setting"
    assert f"({round(max(walls[faster]) / 60)} minutes on an idle 2-core machine" in text


def test_readme_mult_against_mmsa_figures_are_the_reports():
    """MulT beside MMSA's MulT: the README's step times and speed-up are reports/perf/mult_vs_mmsa.md's."""
    report = (ROOT / "reports/perf/mult_vs_mmsa.md").read_text()
    rows = dict(re.findall(r"^\| (MMSA 2\.2\.1|msabench) \| ([\d,]+) \|", report, re.M))
    ratio, low, high = re.search(r"\*\*([\d.]+)×\*\* \(interval ([\d.]+)–([\d.]+)×\)", report).groups()
    text = " ".join(readme().split())
    assert f"{rows['msabench']} ms against {rows['MMSA 2.2.1']} ms per training step, {ratio}× faster " \
           f"(interval {low}–{high}×)" in text
