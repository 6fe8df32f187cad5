"""The command line: one-line errors before any work, optimizer options, python -m, --version."""
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fastopt
from fastopt.cli import build_parser, format_table, main

BAD = [
    (["train", "--hidden", "abc"], "--hidden"),
    (["train", "--hidden", "64,0"], "--hidden"),
    (["train", "--test-size", "2"], "--test-size"),
    (["train", "--weight-decay", "-1"], "--weight-decay"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--activation", "softmax"], "--activation"),
    (["train", "--betas", "0.9"], "--betas"),
    (["train", "--save", "/no/such/folder/m.npz"], "--save"),
    (["train", "--plot", "x.jpgx"], "--plot"),
    (["bench", "--threads", "0"], "--threads"),
    (["bench", "--dtype", "float16"], "--dtype"),
    (["bench", "--min-time", "0"], "--min-time"),
]


@pytest.mark.parametrize("argv,flag", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags_are_one_line_errors(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"fastopt {argv[0]}: error: argument {flag}") and "Traceback" not in "".join(err)


@pytest.mark.parametrize("argv,msg", [
    (["train", "--optimizer", "sgd", "--nesterov"], "nesterov=True requires momentum"),
    (["train", "--opt", "foo=1"], "unknown hyperparameters ['foo']"),
    (["train", "--optimizer", "adam", "--opt", "weight_decay=-1"], "weight_decay"),
])
def test_bad_optimizer_options_fail_before_training(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--no-progress"])
    assert msg in str(e.value)
    assert "epoch" not in capsys.readouterr().out  # no training started


def test_optimizer_options_reach_the_optimizer(monkeypatch):
    from fastopt.train import recipe
    seen = {}
    build = recipe.build

    def spy(*args, **kw):
        trainer, extra = build(*args, **kw)
        seen.update(trainer.optimizer.param_groups[0])
        return trainer, extra

    monkeypatch.setattr(recipe, "build", spy)
    assert main(["train", "--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--epochs", "1", "--lr", "0.05",
                 "--opt", "dampening=0.0", "--state-dtype", "int8", "--no-progress"]) == 0
    assert seen["momentum"] == 0.9 and seen["nesterov"] is True and seen["lr"] == 0.05
    assert seen["state_dtype"] == "int8"


def test_help_shows_defaults_and_version():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "(default: 30)" in text and "(default: adam)" in text
    out = subprocess.run([sys.executable, "-m", "fastopt", "--version"], capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    assert out.returncode == 0 and out.stdout.strip() == f"fastopt {fastopt.__version__}"


def test_digits_loader_matches_scikit_learn():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    from fastopt.datasets import load_digits, stratified_split
    X, y = load_digits()
    X2, y2 = sklearn_datasets.load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    train, test = stratified_split(y, 0.25, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y)
    for k in range(10):
        share = np.mean(y[test] == k) / np.mean(y == k)
        assert 0.9 < share < 1.1


def test_noisy_rows_are_flagged():
    row = {"rule": "adam", "dtype": "float32", "size": "1K", "threads": 1, "peers": {
        "probe": {"best_s": 1e-3, "median_s": 1e-3, "spread": 0.01, "GBps": 10.0},
        "fastopt": {"best_s": 1e-4, "median_s": 1e-4, "spread": 0.02, "GBps": 100.0},
        "numpy": {"best_s": 1e-2, "median_s": 3e-2, "spread": 2.0, "GBps": 1.0}}}
    lines = format_table([row]).splitlines()
    assert [ln.endswith("noisy") for ln in lines[1:4]] == [False, True, True]
    assert lines[-1].startswith("warning: 2 measurement(s) marked noisy")
