"""compare and lr_find, in Python and from the command line."""
import numpy as np
import pytest

from fastopt.cli import main
from fastopt.datasets import load_digits
from fastopt.experiments import compare, lr_find

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X / 16.0, y


def test_compare_trains_every_setting_and_plots_without_switching_the_backend(digits, tmp_path):
    import matplotlib
    backend = matplotlib.get_backend()
    X, y = digits
    r = compare(X, y, {"lr": [1e-4, 1e-2], "optimizer": ["adam", "sgd"]}, epochs=4, patience=0,
                validation_split=0.2, X_test=X[:200], y_test=y[:200])
    assert [run.settings for run in r.runs] == [{"lr": lr, "optimizer": o} for lr in (1e-4, 1e-2)
                                                for o in ("adam", "sgd")]
    assert all(len(run.history.history["loss"]) == 4 and "val_loss" in run.history.history for run in r.runs)
    assert r.best("val_loss").settings == {"lr": 1e-2, "optimizer": "adam"}
    assert all(0 <= run.test["accuracy"] <= 1 for run in r.runs)
    lines = r.table().splitlines()
    assert len(lines) == 5 and "val_accuracy" in lines[0] and "lr=0.0001, optimizer=adam" in lines[1]
    fig = r.plot(str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 10_000 and len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 8  # training and validation for each run
    assert matplotlib.get_backend() == backend
    with pytest.raises(ValueError, match="unknown optimizer"):
        compare(X, y, {"optimizer": ["adam", "adamz"]}, epochs=1)
    with pytest.raises(ValueError, match="both in vary and as a fixed"):
        compare(X, y, {"lr": [1e-3]}, lr=1e-2)
    listed = compare(X, y, [{"lr": 1e-3}, {"lr": 1e-2, "batch_size": 64}], epochs=2)
    assert listed.varied == ["lr", "batch_size"] and len(listed.runs) == 2


def test_lr_find_suggests_a_rate_that_trains(digits, tmp_path):
    X, y = digits
    found = lr_find(X, y, num_steps=120)
    assert len(found.lrs) == len(found.losses) == len(found.smoothed) <= 120
    assert np.all(np.diff(found.lrs) > 0) and 1e-4 < found.suggestion < 1.0
    assert found.smoothed.min() < found.smoothed[0]
    found.plot(str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").stat().st_size > 10_000
    good = compare(X, y, {"lr": [found.suggestion]}, epochs=5, patience=0, validation_split=0.2)
    assert good.runs[0].history.history["val_accuracy"][-1] > 0.9
    for bad in ({"start_lr": 1.0, "end_lr": 0.1}, {"num_steps": 3}, {"beta": 1.0}):
        with pytest.raises(ValueError):
            lr_find(X, y, **bad)


def test_cli_compare_and_lr_find(tmp_path, capsys):
    assert main(["compare", "--vary", "lr=1e-3,1e-2", "--vary", "batch-size=32,64", "--epochs", "2",
                 "--no-progress", "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "lr=0.001, batch_size=32" in out and out.count("\n") >= 6 and (tmp_path / "c.png").exists()
    assert main(["lr-find", "--steps", "60", "--plot", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert "suggested lr: " in out and (tmp_path / "f.png").exists()
    with pytest.raises(SystemExit):
        main(["compare", "--vary", "momentum=0.9"])
    with pytest.raises(SystemExit):
        main(["compare", "--vary", "lr=abc"])
