"""Bad inputs, as a new user types them (issue 19): every command refuses wrong types, missing
paths, empty lists and out-of-range values before anything runs: exit code 2 (also where
table, figure or compare find nothing to show), a message naming the option, no traceback,
nothing written.

Each command's table is one parametrized test; the commands run in-process (`bench.cli.main`)
from an empty working directory, so default outputs (results/, reports/) would show up in
the snapshot too. CUDA is reported absent, so `--device cuda` is refused on any machine.
Hypothesis feeds the `--set` parser any string for any field of any registered model.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.config import parse_set
from datagen import glove_table, mmsa_data, mmsa_path, write_glove, write_glove_iemocap, write_pickle
from models import list_models
from models.registry import FIELD_CHOICES, ConfigError, check_config, get_model_entry, resolve_run_config
from result_factory import make_result, write_results

SWEEPS = {  # name -> sweep file text, each wrong in one value
    "epochs0": "models: [mult]\nepochs: 0\n",
    "seeds_abc": "models: [mult]\nseeds: abc\n",
    "seeds_twice": "models: [mult]\nseeds: [1111, 1112, 1111]\n",
    "flag_maybe": "models: [mult]\ncontributions: maybe\n",
    "models_str": "models: mult\n",
    "datasets_str": "models: [mult]\ndatasets: mosi\n",
    "set_maybe": "models:\n  - name: pase\n    set: {use_sgm: maybe}\n",
    "variant_batch0": "models:\n  - name: mult\n    variants: [{}, {batch_size: 0}]\n",
    "set_list": "models:\n  - name: mult\n    set: [lr, 1]\n",
    "setting_bad": "models: [mult]\nsetting: diagonal\n",
    "variant_slash": "epochs: 1\nseeds: [1111]\nmodels:\n  - name: late_fusion\n    variant: a/b\n",
    "data_rot": "models: [mult]\ndata_rot: /data\n",  # a misspelt data option is refused, not ignored
    "include_missing": "include: [plugins/nothere.py]\nmodels: [mult]\n",  # relative to the sweep file
    "include_number": "include: 3\nmodels: [mult]\n",
}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """An empty working directory beside a file, an empty folder, a results folder, a data
    root with a broken MOSI pickle and the sweep files above."""
    import torch

    (tmp_path / "a_file.txt").write_text("not a folder\n")
    (tmp_path / "empty").mkdir()
    write_results(tmp_path / "results", [
        make_result("mult", seed, predictions=(["s0", "s1", "s2"], [0.5, -0.5, 1.0], [0.4, -0.2, 0.9]))
        for seed in (1111, 1112)
    ])
    bad = tmp_path / "badroot" / "MOSI" / "Processed"
    bad.mkdir(parents=True)
    (bad / "unaligned_50.pkl").write_bytes(b"this is not a pickle")
    for given_as, really in (("mosi", "sims"), ("sims", "mosi")):  # mixroot: each file under the other's name
        write_pickle(mmsa_data(really, "unaligned", (4, 4, 4)), mmsa_path(tmp_path / "mixroot", given_as, "unaligned"))
    _, glove, _ = write_glove_iemocap(tmp_path / "iemo", sizes=(6, 4, 4))  # GloVe-text IEMOCAP + GloVe files
    write_glove(tmp_path / "glove_other.txt", *glove_table(seed=9))  # same words, other vectors: 0 % match
    write_glove(tmp_path / "glove100.txt", *glove_table(dim=100))
    for name, text in SWEEPS.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def refuses(argv: list[str], must: list[str], world: Path, capsys, code: int = 2) -> None:
    argv = [a.replace("{tmp}", str(world)) for a in argv]
    must = [m.replace("{tmp}", str(world)) for m in must]
    before = snapshot(world)
    with pytest.raises(SystemExit) as exc:  # any other exception would be a traceback for the user
        main(argv)
    out = capsys.readouterr()
    text = out.out + out.err
    assert exc.value.code == code, text
    for m in must:
        assert m in text, f"{argv}: message does not name {m!r}:\n{text}"
    assert "Traceback" not in text
    assert snapshot(world) == before, f"{argv} wrote files"


def cases(rows: list[tuple]) -> list:
    """(argv, must-name[, exit code]) rows as pytest params with readable ids."""
    return [pytest.param(r[0], r[1], r[2] if len(r) > 2 else 2, id=" ".join(r[0])[:80]) for r in rows]


OUT = ["--out", "{tmp}/out"]
RUN = [
    # --set: wrong types, empty values, out of range, choices, unknown / fixed keys, impossible combinations
    (["run", "--models", "pase", "--set", "use_sgm=maybe", *OUT], ["--set", "use_sgm", "'maybe'", "bool"]),
    (["run", "--models", "mult", "--set", "batch_size=0", *OUT], ["batch_size=0", ">= 1"]),
    (["run", "--models", "mult", "--set", "batch_size=2.5", *OUT], ["batch_size", "integer"]),
    (["run", "--models", "mult", "--set", "lr=-1", *OUT], ["lr=-1", "> 0"]),
    (["run", "--models", "mult", "--set", "lr=", *OUT], ["lr=null"]),
    (["run", "--models", "mult", "--set", "lr=[", *OUT], ["lr='['"]),
    (["run", "--models", "late_fusion", "--set", "dropout=1.5", *OUT], ["dropout=1.5", "[0, 1)"]),
    (["run", "--models", "mult", "--set", "conv_kernels=1,2", *OUT], ["conv_kernels", "3 values"]),
    (["run", "--models", "pase", "--set", "sgm_mode=fast", *OUT], ["sgm_mode='fast'", "'lr' | 'grad'"]),
    (["run", "--models", "mult", "--set", "early_stop_patience=-1", *OUT], ["early_stop_patience", ">= 0 or null"]),
    (["run", "--models", "mult", "--set", "max_epochs=abc", *OUT], ["max_epochs='abc'"]),
    (["run", "--models", "mult", "--set", "optimizer=sgd", *OUT], ["optimizer='sgd'", "'adam'", "'adamw_hf'"]),
    (["run", "--models", "mult", "--set", "adam_epsilon=0", *OUT], ["adam_epsilon=0", "> 0 or null"]),
    (["run", "--models", "mult", "--set", "noequals", *OUT], ["--set", "KEY=VALUE"]),
    (["run", "--models", "mult", "--set", "dataset=mosi", *OUT], ["dataset", "--datasets"]),
    (["run", "--models", "late_fusion", "--set", "hiden=3", *OUT], ["hiden", "did you mean 'hidden'"]),
    (["run", "--models", "mult", "--set", "d=30", "--set", "heads=4", *OUT], ["4 heads", "cannot be built"]),
    (["run", "--models", "mult", "--set", "data_missing=noise/av/1", *OUT], ["data_missing='noise/av/1'", "removes no steps"]),
    (["run", "--models", "mult", "--set", "data_missing=random/x/0.2", *OUT], ["data_missing=", "'x'", "'tav'"]),
    # run-wide options
    (["run", "--models", "mult", "--epochs", "0", *OUT], ["--epochs", ">= 1"]),
    (["run", "--models", "mult", "--epochs", "two", *OUT], ["--epochs", "not an integer"]),
    (["run", "--models", "mult", "--train-missing", "random/tav/1.5", *OUT], ["--train-missing", "outside [0, 1]"]),
    (["run", "--models", "mult", "--train-missing", "noise/av/1", *OUT], ["--train-missing", "random or structural"]),
    (["run", "--models", "mult", "--train-missing", "random/x/0.3", *OUT], ["--train-missing", "'x'", "'tav'"]),
    (["run", "--models", "mult", "--train-missing", "0.3", *OUT], ["--train-missing", "KIND/MODALITIES/LEVEL"]),
    (["run", "--models", "mult", "--seeds", "abc", *OUT], ["--seeds", "1111,1112 or 1111-1115"]),
    (["run", "--models", "mult", "--seeds", "1115-1111", *OUT], ["--seeds", "1111-1115"]),
    (["run", "--models", "mult", "--seeds", ",", *OUT], ["--seeds", "no seeds"]),
    (["run", "--models", "mult", "--seeds", "-5", *OUT], ["--seeds", "out of range"]),
    (["run", "--models", "mult", "--seeds", "1111,1111", *OUT], ["--seeds", "seed 1111 is given twice"]),
    (["run", "--models", ",", *OUT], ["--models", "empty list"]),
    (["run", "--models", "mlut", *OUT], ["--models", "did you mean 'mult'"]),
    (["run", "--models", "zz*", *OUT], ["--models", "zz*"]),
    (["run", *OUT], ["--models"]),
    (["run", "--models", "mult", "--datasets", ",", *OUT], ["--datasets", "empty list"]),
    (["run", "--models", "mult", "--datasets", "mosx", *OUT], ["--datasets", "did you mean 'mosi'"]),
    (["run", "--models", "mult", "--device", "cuda", *OUT], ["--device cuda", "no CUDA device"]),
    (["run", "--models", "mult", "--device", "tpu", *OUT], ["--device 'tpu'"]),
    (["run", "--models", "mag_bert", "--text-encoder", "{tmp}/missing", *OUT], ["--text-encoder", "no such folder"]),
    (["run", "--models", "mag_bert", "--text-encoder", "{tmp}/a_file.txt", *OUT], ["--text-encoder", "is a file"]),
    (["run", "--models", "mag_bert", "--text-encoder", "{tmp}/empty", *OUT], ["--text-encoder", "config.json"]),
    (["run", "--models", "mult", "--datasets", "mosi", "--data-root", "{tmp}/missing", *OUT], ["--data-root"]),
    (["run", "--models", "mult", "--datasets", "mosi", "--data-root", "{tmp}/empty", *OUT],
     ["{tmp}/empty", "not found"]),
    (["run", "--models", "mult", "--datasets", "mosi", "--data-root", "{tmp}/badroot", *OUT],
     ["{tmp}/badroot/MOSI/Processed/unaligned_50.pkl:"]),  # the full path, not the basename
    (["run", "--models", "mult", "--datasets", "sims", "--data-root", "{tmp}/mixroot", *OUT],
     ["{tmp}/mixroot/SIMS/Processed/unaligned_39.pkl [split=train, key=regression_labels_T]", "MOSI/MOSEI file"]),
    (["run", "--models", "bert_text", "--datasets", "iemocap", "--data-root", "{tmp}/iemo", "--text-encoder", "tiny",
      *OUT], ["iemocap_data.pkl", "--glove PATH"]),
    (["run", "--models", "mult", "--out", "{tmp}/a_file.txt"], ["--out", "is a file"]),
    (["run", "--models", "late_fusion", "--epochs", "1", "--out", "/proc/x"], ["--out '/proc/x'", "write"]),
    (["run", "--models", "late_fusion", "--epochs", "1", "--out", "{tmp}/a_file.txt/x"], ["a_file.txt/x'", "write"]),
    (["run", "--models", "mult", "--preset", "nope", *OUT], ["'nope' preset"]),
    (["run", "--models", "mult", "--variant", "../x", *OUT], ["--variant"]),
    (["run", "--models", "mult", "--setting", "diagonal", *OUT], ["--setting"]),
    (["run", "--models", "mult", "--jobs", "0", *OUT], ["--jobs"]),
    (["run", "--models", "mult", "--jobs", "many", *OUT], ["--jobs", "or auto"]),
    (["run", "--models", "mult", "--runs-per-device", "0", *OUT], ["--runs-per-device"]),
    (["run", "--models", "mult", "--cpus-per-job", "0", *OUT], ["--cpus-per-job"]),
    (["run", "--models", "mult", "--time-min", "-1", *OUT], ["--time-min"]),
    (["run", "--models", "mult", "--launcher", "pbs", *OUT], ["--launcher"]),
    (["run", "--models", "mult", "--jobs", "2", "--device", "cuda", *OUT], ["--device cuda"]),
    (["run", "--models", "mult", "--launcher", "submitit", "--device", "tpu", *OUT], ["--device 'tpu'"]),
    # sweep files
    (["run", "--config", "{tmp}/missing.yaml"], ["missing.yaml", "not found"]),
    (["run", "--config", "{tmp}/empty"], ["{tmp}/empty", "cannot read"]),
    (["run", "--config", "{tmp}/epochs0.yaml", *OUT], ["[key=epochs]", ">= 1"]),
    (["run", "--config", "{tmp}/seeds_abc.yaml", *OUT], ["[key=seeds]", "1111-1115"]),
    (["run", "--config", "{tmp}/seeds_twice.yaml", *OUT], ["[key=seeds]", "seed 1111 is given twice"]),
    (["run", "--config", "{tmp}/flag_maybe.yaml", *OUT], ["[key=contributions]", "bool"]),
    (["run", "--config", "{tmp}/models_str.yaml", *OUT], ["[key=models]"]),
    (["run", "--config", "{tmp}/datasets_str.yaml", *OUT], ["[key=datasets]"]),
    (["run", "--config", "{tmp}/set_maybe.yaml", *OUT], ["set_maybe.yaml", "use_sgm='maybe'"]),
    (["run", "--config", "{tmp}/variant_batch0.yaml", *OUT], ["variant_batch0.yaml", "batch_size=0"]),
    (["run", "--config", "{tmp}/set_list.yaml", *OUT], ["[key=models[0].set]"]),
    (["run", "--config", "{tmp}/setting_bad.yaml", *OUT], ["[key=setting]"]),
    (["run", "--config", "{tmp}/variant_slash.yaml", *OUT], ["[key=models[0].variant]", "'a/b'"]),
    (["run", "--config", "{tmp}/data_rot.yaml", *OUT], ["[key=data_rot]", "unknown key", "data_root"]),
    (["run", "--config", "{tmp}/epochs0.yaml", "--models", "mult", *OUT], ["--config", "--models"]),
    (["run", "--config", "{tmp}/include_missing.yaml", *OUT], ["[key=include]", "'plugins/nothere.py' does not exist"]),
    (["run", "--config", "{tmp}/include_number.yaml", *OUT], ["[key=include]", "a path or a list of paths"]),
    # plugin files (tests/test_plugins.py has the files that fail to load)
    (["run", "--models", "mult", "--include", "{tmp}/missing.py", *OUT], ["--include", "{tmp}/missing.py' does not exist"]),
    (["run", "--models", "mult", "--include", "{tmp}/a_file.txt", *OUT], ["--include", "not a .py file"]),
    (["run", "--models", "mult", "--include", "{tmp}/empty", *OUT], ["--include", "holds no .py files"]),
]

TABLE = [
    (["table", "--results", "{tmp}/missing"], ["--results", "does not exist"]),
    (["table", "--results", "{tmp}/a_file.txt"], ["--results", "is a file"]),
    # nothing to show: exit 2 in every reporting command (bench.cli.NOTHING_TO_SHOW, documented in --help)
    (["table", "--results", "{tmp}/empty"], ["--results", "no result files"]),
    (["table", "--results", "{tmp}/empty", "--tuning"], ["no tuning studies", "bench tune"]),
    (["table", "--results", "{tmp}/results", "--tuning"], ["no tuning studies"]),
    (["table", "--results", "{tmp}/results", "--datasets", "mosi"], ["no results for dataset 'mosi'"]),
    (["table", "--results", "{tmp}/results", "--format", "pdf"], ["--format", "pdf"]),
    (["table", "--results", "{tmp}/results", "--format", ","], ["--format", "empty"]),
    (["table", "--results", "{tmp}/results", "--seeds", "x"], ["--seeds", "1111-1115"]),
    (["table", "--results", "{tmp}/results", "--seeds", "3-1"], ["--seeds"]),
    (["table", "--results", "{tmp}/results", "--models", ","], ["--models", "empty list"]),
    (["table", "--results", "{tmp}/results", "--datasets", ","], ["--datasets", "empty list"]),
    (["table", "--results", "{tmp}/results", "--out", "{tmp}/a_file.txt"], ["--out", "is a file"]),
    (["table", "--results", "{tmp}/results", "--out", ""], ["--out", "empty path"]),
]

FIGURE = [
    (["figure", "contributions", "--results", "{tmp}/missing"], ["--results", "does not exist"]),
    (["figure", "contributions", "--results", "{tmp}/results", "--seeds", "abc"], ["--seeds"]),
    (["figure", "contributions", "--results", "{tmp}/results", "--band", "wide"], ["--band"]),
    (["figure", "contributions", "--results", "{tmp}/results", "--model", "nothere"], ["nothere"]),
    (["figure", "contributions", "--results", "{tmp}/results", "--dataset", "nope"], ["nope"]),
    (["figure", "contributions", "--results", "{tmp}/results", "--out", "{tmp}/a_file.txt"], ["--out"]),
    (["figure", "predictions", "--results", "{tmp}/results", "--models", ","], ["--models", "empty list"]),
    (["figure", "predictions", "--results", "{tmp}/a_file.txt"], ["--results", "is a file"]),
    (["figure", "predictions", "--results", "{tmp}/results", "--seeds", "1-0"], ["--seeds"]),
    (["figure", "predictions", "--results", "{tmp}/results", "--models", "nothere"], ["nothere"]),
    (["figure", "bogus"], ["KIND", "bogus"]),
    (["figure"], ["contributions"]),
]

COMPARE = [
    (["compare", "mult", "pase", "--results", "{tmp}/missing"], ["--results", "does not exist"]),
    (["compare", "mult", "pase", "--results", "{tmp}/results", "--resamples", "0"], ["--resamples", ">= 1"]),
    (["compare", "mult", "pase", "--results", "{tmp}/results", "--resamples", "many"], ["--resamples"]),
    (["compare", "mult", "pase", "--results", "{tmp}/results", "--rng-seed", "-1"], ["--rng-seed", ">= 0"]),
    (["compare", "mult", "mult", "--results", "{tmp}/results", "--metrics", ","], ["--metrics", "empty list"]),
    (["compare", "mult", "mult", "--results", "{tmp}/results", "--metrics", "Acc_2"], ["--metrics", "Acc_2"]),
    (["compare", "mult", "pase", "--results", "{tmp}/results", "--seeds", "abc"], ["--seeds"]),
    (["compare", "mult", "nothere", "--results", "{tmp}/results"], ["nothere"]),
    (["compare", "mult", "mult", "--results", "{tmp}/results", "--out", "{tmp}/a_file.txt"], ["--out"]),
    (["compare", "mult"], ["MODEL_B"]),
]

EVALUATE = [
    (["evaluate", "--results", "{tmp}/missing"], ["--results", "does not exist"]),
    (["evaluate", "--results", "{tmp}/results"], ["no result files with a saved state", "--save-state"]),
    (["evaluate", "--results", "{tmp}/results", "--conditions", "random/x/*"], ["--conditions 'random/x/*'"]),
    (["evaluate", "--results", "{tmp}/results", "--conditions", "random/tav/2"], ["random/tav/2", "outside [0, 1]"]),
    (["evaluate", "--results", "{tmp}/results", "--condition-seed", "-1"], ["--condition-seed", ">= 0"]),
]
DATA = [
    (["data", "check", "--dataset", ","], ["--dataset", "empty list"]),
    (["data", "check", "--dataset", "foo"], ["--dataset", "unknown dataset 'foo'"]),
    (["data", "check", "--dataset", "mosi", "--data-root", "{tmp}/missing"], ["--data-root"]),
    (["data", "check", "--dataset", "mosi", "--data-root", "{tmp}/empty"], ["{tmp}/empty", "not found"]),
    (["data", "check", "--dataset", "mosi", "--data-root", "{tmp}/badroot"],
     ["{tmp}/badroot/MOSI/Processed/unaligned_50.pkl:"]),
    (["data", "check", "--dataset", "mosi", "--data-root", "{tmp}/mixroot"],  # a CH-SIMS file given as MOSI
     ["{tmp}/mixroot/MOSI/Processed/unaligned_50.pkl [split=train, key=regression_labels_T]", "CH-SIMS file"]),
    (["data", "check", "--dataset", "sims", "--data-root", "{tmp}/mixroot"],  # a MOSI file given as CH-SIMS
     ["{tmp}/mixroot/SIMS/Processed/unaligned_39.pkl [split=train, key=regression_labels_T]", "MOSI/MOSEI file"]),
    (["data", "check", "--dataset", "simsv2", "--setting", "aligned"], ["CH-SIMS v2 has no aligned file"]),
    (["data", "check", "--dataset", "mosi", "--setting", "bogus"], ["--setting"]),
    # IEMOCAP words from GloVe vectors: a missing file, another width, a file that matches few vectors, no file
    (["data", "check", "--dataset", "iemocap", "--data-root", "{tmp}/iemo", "--glove", "{tmp}/nothere.txt"],
     ["{tmp}/nothere.txt", "GloVe file not found"]),
    (["data", "check", "--dataset", "iemocap", "--data-root", "{tmp}/iemo", "--glove", "{tmp}/glove100.txt"],
     ["{tmp}/glove100.txt", "100-d", "300-d"]),
    (["data", "check", "--dataset", "iemocap", "--data-root", "{tmp}/iemo", "--glove", "{tmp}/glove_other.txt"],
     ["{tmp}/glove_other.txt", "matches 0 of", "(0.0%", "50% minimum"]),
    (["data", "check", "--dataset", "mosi", "--glove", "{tmp}/iemo/glove.txt"], ["--glove", "IEMOCAP"]),
    (["data", "check", "--dataset", "mosi", "--text-input", "words"], ["--text-input"]),
    (["data", "check"], ["--dataset"]),
    (["data"], ["check"]),
]

PERF = [
    (["perf", "--models", "nope"], ["--models", "unknown model 'nope'"]),
    (["perf", "--models", ","], ["--models", "empty list"]),
    (["perf"], ["--models"]),
    (["perf", "--models", "mult", "--batch", "0"], ["--batch", ">= 1"]),
    (["perf", "--models", "mult", "--steps", "x"], ["--steps", "not an integer"]),
    (["plan", "--models", "mult", "--perf", "{tmp}/none.json"], ["--perf", "none.json", "no such file"]),
    (["plan", "--models", "nope"], ["--models", "nope"]),
    (["perf", "--models", "mult", "--warmup", "-1"], ["--warmup", ">= 0"]),
    (["perf", "--models", "mult", "--dataset-shapes", "sims"], ["--dataset-shapes"]),
    (["perf", "--models", "mult", "--device", "cuda"], ["--device cuda"]),
    (["perf", "--models", "mult", "--device", "tpu"], ["--device 'tpu'"]),
    (["perf", "--models", "mult", "--json", "{tmp}/empty"], ["--json"]),
    (["perf", "--models", "mult", "--steps", "4"], ["--steps", ">= 5"]),
    (["perf", "--models", "mult", "--markdown", "{tmp}/empty"], ["--markdown", "not a folder"]),
    (["perf", "--models", "mult", "--markdown", "{tmp}/r.json"], ["--markdown", ".md path"]),
    (["perf", "--models", "bert_text", "--check", "--no-floor"], ["--check", "--no-floor"]),
]

TUNE = [
    (["tune", "--models", "late_fusion", "--gpus-per-job", "-1"], ["--gpus-per-job", ">= 0"]),
    (["tune", "--models", "late_fusion", "--time-min", "0"], ["--time-min", ">= 1"]),
    (["tune", "--models", "late_fusion", "--seed", "-1"], ["--seed", ">= 0"]),
    (["tune", "--models", "late_fusion", "--trials", "1", "--out", "/proc/x"], ["--out '/proc/x'", "write"]),
    (["tune", "--models", "late_fusion", "--trials", "1", "--trial-seed", "1111"], ["--trial-seed 1111", "final"]),
    (["tune", "--models", "late_fusion", "--trials", "1", "--seeds", "7", "--trial-seed", "7"], ["--trial-seed 7"]),
]

LS = [
    (["ls", "zzz*"], ["PATTERN 'zzz*'"]),
    (["ls", "nope"], ["PATTERN 'nope'"]),
    (["ls", "["], ["PATTERN '['"]),
    (["ls", "mult", "pase"], ["unrecognized arguments"]),
]

CHECK_MODEL = [
    (["check-model", "mlut"], ["unknown model 'mlut'", "did you mean 'mult'"]),
    (["check-model"], ["NAME"]),
]


@pytest.mark.parametrize("argv,must,code", cases(RUN + TABLE + FIGURE + COMPARE + EVALUATE + DATA + PERF + TUNE + LS + CHECK_MODEL))
def test_cli_refuses_bad_input(argv, must, code, world, capsys):
    refuses(argv, must, world, capsys, code)


# -- the --set parser: any string for any field ------------------------------------------
def conforms(value, hint) -> bool:
    """`value` is of the declared type (the subset of typing the configs use)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return any(conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, tuple) and (len(args) == 2 and args[1] is Ellipsis or len(value) == len(args)) \
            and all(conforms(v, a) for v, a in zip(value, args if args[-1] is not Ellipsis else [args[0]] * len(value)))
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (float, str):
        return type(value) is hint
    return True


FIELDS = [(m, f.name) for m in list_models() for f in dataclasses.fields(get_model_entry(m).config_cls)]
TRICKY = ["true", "false", "yes", "maybe", "null", "~", "", " ", "0", "-1", "1", "2.5", "1e-4", "-0.0", "nan",
          "inf", "1e400", "[1, 2, 3]", "[1, 2]", "[", "]", "{a: 1}", "2020-01-01", "1,2,3", "0x10", "1_000",
          "  7 ", "lr", "grad", "ids", "adamw", "plateau", "=", "a=b", "'quoted'", "\n", "\x00", "٣"]


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), text=st.one_of(st.sampled_from(TRICKY), st.text(max_size=12),
                                                      st.integers().map(str), st.floats().map(str)))
def test_set_parser_gives_a_typed_value_or_a_clear_error(field, text):
    model, key = field
    overrides = parse_set([f"{key}={text}"])  # KEY=VALUE with a valid key never fails to parse
    try:
        cfg = resolve_run_config(model, "synthetic", None, overrides)
    except ConfigError as err:
        msg = str(err)
        assert f"model '{model}'" in msg and key in msg and ("is not allowed" in msg or "is set by" in msg), msg
        assert err.key == key
        return
    hint = typing.get_type_hints(get_model_entry(model).config_cls)[key]
    assert conforms(getattr(cfg, key), hint), (key, text, getattr(cfg, key), hint)


# -- the rules themselves -----------------------------------------------------------------
@pytest.mark.parametrize("name", list_models())
def test_every_preset_passes_validation(name):
    for (dataset, preset), cfg in get_model_entry(name).presets.items():
        check_config(cfg, name)


def test_choice_tables_name_real_fields_and_match_their_sources():
    import models.layers.bert_classifier

    classes = {c.__name__: c for m in list_models() for c in get_model_entry(m).config_cls.__mro__}
    for key in FIELD_CHOICES:
        cls, field = key.split(".")
        assert cls in classes and field in {f.name for f in dataclasses.fields(classes[cls])}, key
    losses = {x for allowed in models.layers.bert_classifier.LOSSES.values() for x in allowed}
    assert set(FIELD_CHOICES["BertTextConfig.loss"]) == losses


def test_null_reaches_optional_fields_and_typed_values_reach_the_config():
    cfg = resolve_run_config("mult", "synthetic", None, parse_set(["early_stop_patience=null", "lr=1e-4",
                                                                   "conv_kernels=[3, 3, 3]", "positions=true"]))
    assert cfg.early_stop_patience is None and cfg.lr == 1e-4 and cfg.conv_kernels == (3, 3, 3) and cfg.positions


# -- the issue's rows, as a user's shell runs them ----------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("args,must", [
    (["--models", "pase", "--set", "use_sgm=maybe"], "use_sgm"),
    (["--models", "mult", "--epochs", "0"], "--epochs"),
    (["--models", "mult", "--set", "batch_size=0"], "batch_size"),
    (["--models", "mult", "--seeds", "abc"], "--seeds"),
    (["--models", "mult", "--device", "cuda"], "--device"),
    (["--models", "mag_bert", "--text-encoder", "/missing/dir"], "--text-encoder"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_issue_rows_in_a_subprocess(args, must, tmp_path):
    import os
    import subprocess
    import sys

    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "bench", "run", *args, "--out", str(tmp_path / "out")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2 and must in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []
