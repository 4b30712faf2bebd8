"""Plugins (bench/plugins.py): models from files included by path (--include, MSABENCH_INCLUDE,
a sweep's `include:`) and from installed packages' `msabench.models` entry points run through
every command like msabench's own; a bad plugin is an exit-2 error that says where it is.

In-process tests restore the registry afterwards (`clean`), so the registry-wide tests never see
their models; the end-to-end ones run the CLI in a subprocess."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench.plugins as plugins
import models.registry as registry
from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "msabench-example" / "msabench_example" / "mean_pool.py"

# a plugin file: one model `{name}` with a demo preset on synthetic only
PLUGIN = '''
from dataclasses import dataclass
from models import register_model
from models.base import ModelConfig, MSAModel


@dataclass(kw_only=True)
class Config(ModelConfig):
    pass


@register_model("{name}", config=Config, presets={{("synthetic", "demo"): Config()}})
def build(cfg):
    return MSAModel(cfg)
'''


def plugin(folder: Path, name: str, file: str | None = None) -> Path:
    path = folder / (file or f"{name}.py")
    path.write_text(PLUGIN.format(name=name))
    return path


@pytest.fixture
def clean(monkeypatch):
    """The registry and the plugin state as they were before the test."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(plugins, "_LOADED", {})
    monkeypatch.setattr(registry, "_BROKEN", {})
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("msabench_plugin_", "ep_")):
            del sys.modules[name]


def rows(text: str) -> list[list[str]]:
    """The cells of the Markdown table rows in `text`."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def lists(text: str, model: str) -> bool:
    """Whether an `ls` output lists `model` with its demo preset on synthetic, counted."""
    return any(r[:3] == [model, "synthetic", "demo *"] and r[3].replace(",", "").isdigit() for r in rows(text))


def cli(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out + out.err


def bench_cli(*argv: str, env: dict[str, str] | None = None, timeout: int = 120) -> str:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    out = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=full, capture_output=True,
                         text=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"bench {' '.join(argv)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


# -- the example plugin, end to end --------------------------------------------------------------
@pytest.mark.slow
def test_example_plugin_runs_through_ls_run_jobs_table_and_compare(tmp_path):
    """By path: `ls` lists it; `run --jobs 2` trains it beside late_fusion in worker processes
    (which load the include themselves); `table` has both rows; `compare` pairs them."""
    inc = ["--include", str(EXAMPLE)]
    listed = bench_cli("ls", "mean_pool", *inc)
    assert lists(listed, "mean_pool") and "plugin: " + str(EXAMPLE) in listed
    res = tmp_path / "results"
    bench_cli("run", *inc, "--models", "mean_pool,late_fusion", "--seeds", "1111", "--epochs", "1", "--jobs", "2",
              "--no-contributions", "--no-robustness", "--quiet", "--out", str(res))
    for model in ("mean_pool", "late_fusion"):
        assert json.loads((res / "synthetic" / model / "seed1111.json").read_text())["status"] == "ok"
    table = bench_cli("table", *inc, "--results", str(res), "--out", str(tmp_path / "reports"), "--format", "md")
    names = [r[0] for r in rows(table)]
    assert "Mean pool (example)" in names and "Late fusion" in names, table  # display names, as registered
    compared = bench_cli("compare", "mean_pool", "late_fusion", *inc, "--results", str(res), "--resamples", "50",
                         "--out", str(tmp_path / "reports"))
    assert "mean_pool vs late_fusion" in compared


def test_installed_entry_point_is_listed_without_include(tmp_path):
    """A package that declares the group `msabench.models` (here a dist-info on PYTHONPATH, as an
    install leaves it) has its model listed; without the declaration it is not."""
    site = tmp_path / "site"
    (site / "ep_example").mkdir(parents=True)
    (site / "ep_example" / "__init__.py").write_text("")
    plugin(site / "ep_example", "ep_model", "model.py")
    info = site / "ep_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-example\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[msabench.models]\nep_model = ep_example.model\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "MSABENCH_DISABLE_ENTRY_POINTS": ""}
    assert lists(bench_cli("ls", "ep_*", env=env), "ep_model")
    (info / "entry_points.txt").write_text("")
    out = subprocess.run([sys.executable, "-m", "bench", "ls", "ep_*"], cwd=ROOT, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "matches no registered model" in out.stderr


# -- by path -----------------------------------------------------------------------------------
def test_a_user_file_named_models_py_loads_and_msabench_models_stay(tmp_path, clean, capsys):
    path = plugin(tmp_path, "user_model", "models.py")
    code, text = cli(["ls", "user_model", "--include", str(path)], capsys)
    assert code == 0 and lists(text, "user_model"), text
    import models

    assert models.__file__ == str(ROOT / "models" / "__init__.py")
    assert registry.get_model_entry("user_model").builder.__module__.startswith("msabench_plugin_")
    assert {"mult", "late_fusion"} <= set(registry.list_models())


def test_a_folder_the_env_variable_and_a_second_load_of_the_same_file(tmp_path, clean, monkeypatch, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    plugin(folder, "model_a")
    plugin(folder, "model_b")
    (folder / "_helper.py").write_text("raise RuntimeError('files starting with _ are not loaded')\n")
    monkeypatch.setenv("MSABENCH_INCLUDE", os.pathsep.join([str(folder), str(folder / "model_a.py")]))
    code, text = cli(["ls", "model_*", "--include", str(folder / "model_b.py")], capsys)
    assert code == 0 and lists(text, "model_a") and lists(text, "model_b"), text
    assert len(plugins.loaded_files()) == 2


def test_sweep_include_is_relative_to_the_sweep_file(tmp_path, clean, monkeypatch):
    from bench.config import load_sweep

    (tmp_path / "plugins").mkdir()
    plugin(tmp_path / "plugins", "swept")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("include: plugins/swept.py\nmodels: [swept]\nseeds: [1111]\n")
    monkeypatch.chdir(ROOT)
    runs = load_sweep(sweep)
    assert [r.model for r in runs] == ["swept"] and "swept" in registry.list_models()


def test_with_plugins_loads_the_parents_files_first(tmp_path, clean, monkeypatch):
    """What a --jobs worker, a scheduler job or a perf session runs: the included files, then the call."""
    import pickle

    path = plugin(tmp_path, "carried")
    plugins.include([str(path)], "--include")
    fn = pickle.loads(pickle.dumps(plugins.WithPlugins(registry.list_models)))
    monkeypatch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items() if k != "carried"})
    monkeypatch.setattr(plugins, "_LOADED", {})
    del sys.modules[plugins.module_name(path)]  # as in a fresh process
    assert "carried" in fn()


# -- bad plugins ---------------------------------------------------------------------------------
@pytest.mark.parametrize("given, source", [("cli", "--include"), ("env", "MSABENCH_INCLUDE"),
                                           ("sweep", "sweep.yaml [key=include]")])
def test_a_missing_include_path_names_the_path_and_where_it_was_given(given, source, tmp_path, clean, monkeypatch,
                                                                      capsys):
    missing = "nothere/my_model.py"
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--models", "late_fusion", "--out", str(tmp_path / "out")]
    if given == "cli":
        argv += ["--include", missing]
    elif given == "env":
        monkeypatch.setenv("MSABENCH_INCLUDE", missing)
    else:
        (tmp_path / "sweep.yaml").write_text(f"include: [{missing}]\nmodels: [late_fusion]\n")
        argv = ["run", "--config", "sweep.yaml"]
    code, text = cli(argv, capsys)
    assert code == 2 and source in text and f"'{missing}' does not exist" in text, text
    assert "Traceback" not in text and not (tmp_path / "out").exists()


BROKEN = {  # file text -> (line named, what the message says)
    "import torch\n\ndef f(:\n    pass\n": (3, "SyntaxError: invalid syntax"),
    "import os\nimport no_such_package_xyz\n": (2, "ModuleNotFoundError: No module named 'no_such_package_xyz'"),
    "X = 1\n\n\nraise RuntimeError('broken on purpose')\n": (4, "RuntimeError: broken on purpose"),
}


@pytest.mark.parametrize("text", BROKEN, ids=["syntax", "import", "raises"])
def test_a_file_that_fails_to_import_is_named_with_its_line(text, tmp_path, clean, capsys):
    path = tmp_path / "bad_model.py"
    path.write_text(text)
    line, what = BROKEN[text]
    code, out = cli(["ls", "--include", str(path)], capsys)
    assert code == 2 and f"{path}:{line}: {what}" in out and "--include" in out, out
    assert "Traceback" not in out


def test_a_name_registered_twice_names_both_places(tmp_path, clean, capsys):
    first, second = plugin(tmp_path, "twice", "first.py"), plugin(tmp_path, "twice", "second.py")
    line = PLUGIN.splitlines().index('@register_model("{name}", config=Config, presets={{("synthetic", "demo"): '
                                     'Config()}})') + 1
    code, out = cli(["ls", "--include", str(first), "--include", str(second)], capsys)
    assert code == 2 and "model 'twice' is registered twice" in out, out
    assert f"first at {first}:{line}, again at {second}:{line}" in out


def test_a_plugin_may_not_take_a_builtin_name(tmp_path, clean, capsys):
    code, out = cli(["ls", "--include", str(plugin(tmp_path, "mult", "mine.py"))], capsys)
    assert code == 2 and f"first at {ROOT / 'models' / 'mult.py'}:" in out and f"again at {tmp_path}" in out, out


def test_a_broken_entry_point_does_not_stop_the_others_and_asking_for_it_names_it(tmp_path, clean, monkeypatch,
                                                                                  capsys):
    plugin(tmp_path, "ep_good")
    (tmp_path / "ep_bad.py").write_text("import no_such_package_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("MSABENCH_DISABLE_ENTRY_POINTS")
    eps = [importlib.metadata.EntryPoint(n, n, registry.ENTRY_POINT_GROUP) for n in ("ep_bad", "ep_good")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps if group == registry.ENTRY_POINT_GROUP else [])
    assert "ep_good" in registry.list_models()
    with pytest.raises(registry.UnknownNameError) as err:
        registry.get_model_entry("ep_bad")
    assert str(err.value) == ("model 'ep_bad': the plugin entry point 'ep_bad = ep_bad' (group msabench.models) "
                              "failed to import: ModuleNotFoundError: No module named 'no_such_package_xyz'")
    code, out = cli(["run", "--models", "ep_bad", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "--models: model 'ep_bad': the plugin entry point 'ep_bad = ep_bad'" in out, out


def test_a_model_without_a_preset_for_the_dataset_names_model_dataset_and_presets(tmp_path, clean, capsys):
    path = plugin(tmp_path, "synthetic_only")
    code, out = cli(["run", "--include", str(path), "--models", "synthetic_only", "--datasets", "mosi",
                     "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "model 'synthetic_only' has no preset for dataset 'mosi'; its presets: synthetic: demo" in out


@pytest.mark.slow
def test_the_installed_example_package_runs_end_to_end_through_its_entry_point(tmp_path):
    """examples/msabench-example installed (CI does; MSABENCH_REQUIRE_EXAMPLE=1 there makes it
    required): its model is in every command with no --include: check-model, a one-seed run
    beside a built-in model, the table with both, compare."""
    if not any(ep.name == "mean_pool" for ep in importlib.metadata.entry_points(group=registry.ENTRY_POINT_GROUP)):
        if os.environ.get("MSABENCH_REQUIRE_EXAMPLE", "") not in ("", "0"):
            pytest.fail("examples/msabench-example is not installed: pip install --no-deps -e examples/msabench-example")
        pytest.skip("examples/msabench-example is not installed (pip install --no-deps -e examples/msabench-example)")
    env = {**os.environ, "MSABENCH_DISABLE_ENTRY_POINTS": "0", "PYTHONPATH": str(ROOT)}
    results, reports = str(tmp_path / "results"), str(tmp_path / "reports")

    def bench(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "bench", *args], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600, check=False)
        assert out.returncode == 0, f"bench {' '.join(args)}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    assert "13 checks: 12 passed, 0 failed, 1 skipped" in bench("check-model", "mean_pool")
    bench("run", "--models", "mean_pool,late_fusion", "--seeds", "1111", "--epochs", "1", "--out", results, "--quiet")
    table = bench("table", "--results", results, "--out", reports)
    assert "| Mean pool (example) " in table and "| Late fusion " in table, table
    assert "MAE" in bench("compare", "mean_pool", "late_fusion", "--results", results)
