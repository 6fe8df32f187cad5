"""Hyperparameter search, the shared training recipe and the named schedules."""
import math

import numpy as np
import pytest

from fastopt import schedules as S
from fastopt.search import SearchResult, grid_search, loguniform, randint, random_search, splits, uniform
from fastopt.train import recipe

sklearn_datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def digits():
    X, y = sklearn_datasets.load_digits(return_X_y=True)
    return X / 16.0, y


def test_int_and_share_cv_are_scikit_learns_stratified_splitters():
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
    y = np.repeat(np.arange(3), [30, 20, 10])
    X = np.zeros((len(y), 1))
    folds = splits(X, y, 5, True, seed=0)
    want = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, want))
    for _, test in folds:
        assert np.array_equal(np.bincount(y[test], minlength=3), [6, 4, 2])
    (train, test), = splits(X, y, 0.25, True, seed=1)
    (t2, s2), = StratifiedShuffleSplit(1, test_size=0.25, random_state=1).split(X, y)
    assert np.array_equal(test, s2) and len(np.intersect1d(train, test)) == 0
    with pytest.raises(ValueError, match="cv must be between 2"):
        splits(X, y, 1, False, seed=0)
    with pytest.raises(ValueError, match="share in \\(0, 1\\)"):
        splits(X, y, 1.5, True, seed=0)


def test_any_splitter_scorer_and_parallel_jobs(digits):
    from sklearn.model_selection import GroupKFold, KFold, ShuffleSplit
    from sklearn.metrics import make_scorer, f1_score
    X, y = digits[0][:600], digits[1][:600]
    space = {"lr": [3e-3, 1e-2]}
    kw = dict(epochs=4, patience=0, verbose=False, refit=False)
    r = grid_search(X, y, space, cv=KFold(3), scoring="f1_macro", **kw)
    assert r.scoring == "f1_macro" and all(len(row["scores"]) == 3 for row in r.rows)
    assert all(0.5 < row["mean_score"] <= 1 for row in r.rows)
    groups = np.arange(len(y)) % 4
    g = grid_search(X, y, space, cv=GroupKFold(4), groups=groups, scoring="accuracy", **kw)
    assert all(len(row["scores"]) == 4 for row in g.rows)
    custom = make_scorer(f1_score, average="micro")
    c = grid_search(X, y, space, cv=ShuffleSplit(2, test_size=0.3, random_state=0), scoring=custom, **kw)
    a = grid_search(X, y, space, cv=ShuffleSplit(2, test_size=0.3, random_state=0), scoring="accuracy", **kw)
    for rc, ra in zip(c.rows, a.rows):  # micro-averaged f1 is the accuracy
        assert rc["scores"] == pytest.approx(ra["scores"])
    binary = y % 2
    roc = grid_search(X, binary, space, cv=3, scoring="roc_auc", **kw)
    assert all(0.5 < row["mean_score"] <= 1 for row in roc.rows)
    par = grid_search(X, y, space, cv=KFold(3), scoring="f1_macro", n_jobs=2, **kw)
    assert [row["scores"] for row in par.rows] == [row["scores"] for row in r.rows]  # exactly the serial scores
    assert all(len(row["histories"]) == 3 for row in par.rows)  # every fit's history is kept


def test_grid_search_tries_every_combination_and_picks_the_best(digits):
    X, y = digits
    space = {"optimizer": ["adam", "sgd"], "lr": [1e-3, 1e-2]}
    r = grid_search(X, y, space, cv=3, epochs=8, verbose=False)
    assert [row["params"] for row in r.rows] == [
        {"optimizer": o, "lr": lr} for o in ("adam", "sgd") for lr in (1e-3, 1e-2)]
    for row in r.rows:
        assert len(row["scores"]) == 3
        assert row["mean_score"] == pytest.approx(np.mean(row["scores"]))
    assert r.best_score == max(row["mean_score"] for row in r.rows)
    # plain SGD at lr 1e-3 for 8 epochs barely moves; Adam at 1e-2 learns the digits
    assert r.best_params["optimizer"] == "adam" and r.best_score > 0.93
    worst = min(r.rows, key=lambda row: row["mean_score"])
    assert worst["params"] == {"optimizer": "sgd", "lr": 1e-3}
    lines = r.table().splitlines()
    assert len(lines) == 5 and "accuracy" in lines[0] and lines[1].split()[0] == "1"
    # the refitted model is the best configuration trained on everything
    assert (r.best_trainer.model.forward(X).argmax(axis=1) == y).mean() > 0.95


def test_search_is_reproducible_and_saves_csv(digits, tmp_path):
    X, y = digits
    space = {"lr": loguniform(1e-3, 1e-1), "batch_size": [16, 64], "hidden_layer_sizes": [(32,), (32, 16)],
             "schedule": ["constant", "cosine", "onecycle"], "l2": uniform(0.0, 1e-3), "warmup": randint(0, 20)}
    a = random_search(X[:600], y[:600], space, n_iter=3, cv=0.25, epochs=4, seed=3, verbose=False, refit=False)
    b = random_search(X[:600], y[:600], space, n_iter=3, cv=0.25, epochs=4, seed=3, verbose=False, refit=False)
    assert [r["params"] for r in a.rows] == [r["params"] for r in b.rows]
    assert [r["scores"] for r in a.rows] == [r["scores"] for r in b.rows]
    for row in a.rows:
        p = row["params"]
        assert 1e-3 <= p["lr"] <= 1e-1 and p["batch_size"] in (16, 64) and 0 <= p["warmup"] < 20
        assert len(row["scores"]) == 1
    assert a.best_trainer is None
    path = tmp_path / "search.csv"
    a.to_csv(str(path))
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("lr,batch_size,hidden_layer_sizes")


def test_search_accepts_scipy_distributions(digits):
    stats = pytest.importorskip("scipy.stats")
    X, y = digits
    r = random_search(X[:300], y[:300], {"lr": stats.loguniform(1e-3, 1e-2)}, n_iter=2, cv=2, epochs=2,
                      verbose=False, refit=False)
    assert all(1e-3 <= row["params"]["lr"] <= 1e-2 for row in r.rows)


def test_regression_search_scores_r2():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = X @ np.array([1.0, 2.0, 3.0]) + 0.1 * rng.standard_normal(300)
    r = grid_search(X, y, {"lr": [1e-3, 3e-2]}, task="regression", cv=3, epochs=40, hidden_layer_sizes=(),
                    patience=0, verbose=False)
    assert r.scoring == "r2" and r.best_params == {"lr": 3e-2} and r.best_score > 0.99
    neg = grid_search(X, y, {"lr": [3e-2]}, task="regression", scoring="neg_mse", cv=3, epochs=40,
                      hidden_layer_sizes=(), patience=0, verbose=False, refit=False)
    assert -0.05 < neg.best_score < 0  # the noise variance is 0.01


@pytest.mark.parametrize("call, match", [
    (lambda X, y: grid_search(X, y, {"lr": [1e-3, -1.0]}, verbose=False), "lr must be > 0"),
    (lambda X, y: grid_search(X, y, {"optimizer": ["adam", "adamz"]}, verbose=False), "unknown optimizer 'adamz'"),
    (lambda X, y: grid_search(X, y, {"schedule": ["cosine", "sawtooth"]}, verbose=False), "unknown schedule"),
    (lambda X, y: grid_search(X, y, {"batch_size": [0]}, verbose=False), "batch_size must be an integer >= 1"),
    (lambda X, y: grid_search(X, y, {"learning_rate": [1e-3]}, verbose=False), "unknown setting"),
    (lambda X, y: grid_search(X, y, {"lr": 1e-3}, verbose=False), "must be a non-empty list"),
    (lambda X, y: grid_search(X, y, {"lr": [1e-3]}, lr=1e-2, verbose=False), "both in space and as a fixed"),
    (lambda X, y: grid_search(X, y, {"lr": [1e-3]}, cv=1, verbose=False), "cv must be between 2"),
    (lambda X, y: grid_search(X, y, {"lr": [1e-3]}, cv="5", verbose=False), "cv must be an int"),
    (lambda X, y: grid_search(X, y, {"lr": [1e-3]}, scoring="nope", verbose=False), "unknown scoring 'nope'"),
    (lambda X, y: grid_search(X[:, :1][:10], y, {"lr": [1e-3]}, verbose=False), "has 10 samples but y has"),
    (lambda X, y: random_search(X, y, {"lr": [1e-3]}, n_iter=0, verbose=False), "n_iter must be"),
])
def test_bad_searches_fail_before_training(digits, call, match, monkeypatch):
    X, y = digits
    trained = []
    monkeypatch.setattr(recipe.Trainer, "fit", lambda *a, **k: trained.append(1))
    with pytest.raises((ValueError, TypeError), match=match):
        call(X, y)
    assert not trained


def test_nan_in_the_data_is_refused(digits):
    X, y = digits
    X = X.copy()
    X[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        grid_search(X, y, {"lr": [1e-3]}, verbose=False)


def test_search_result_repr_and_ranking():
    rows = [{"params": {"lr": lr}, "scores": [s], "mean_score": s, "std_score": 0.0, "mean_epochs": 1.0,
             "fit_time": 0.1} for lr, s in ((0.1, 0.5), (0.01, 0.9), (0.001, 0.7))]
    r = SearchResult(rows, ["lr"], "accuracy")
    assert r.best_index == 1 and r.best_params == {"lr": 0.01}
    assert [row["mean_score"] for row in r.ranked()] == [0.9, 0.7, 0.5]
    assert "best accuracy=0.9000" in repr(r)


def test_recipe_build_follows_the_settings():
    trainer, p = recipe.build(8, 3, 100, hidden_layer_sizes=(16, 4), activation="tanh", optimizer="sgd", lr=0.1,
                              optimizer_kwargs={"momentum": 0.9}, l2=1e-4, patience=0, dtype="float64")
    model = trainer.model
    assert [layer.units for layer in model.layers] == [16, 4, 3]
    assert [layer.activation for layer in model.layers] == ["tanh", "tanh", "softmax"]
    assert model.params.dtype == np.float64 and model.n_params == 8 * 16 + 16 + 16 * 4 + 4 + 4 * 3 + 3
    g = trainer.optimizer.param_groups[0]
    assert type(trainer.optimizer).__name__ == "SGD" and g["momentum"] == 0.9 and g["l2"] == 1e-4
    assert trainer.early_stopping is None and p["epochs"] == recipe.DEFAULTS["epochs"]
    reg, _ = recipe.build(2, 1, 10, task="regression")
    assert reg.loss == "mse" and reg.model.layers[-1].activation == "identity"
    with pytest.raises(ValueError, match="task must be"):
        recipe.build(2, 1, 10, task="ranking")


def test_named_schedules_shape_the_run():
    total = 120
    assert S.make("constant", 0.1, total)(total - 1) == 0.1
    step = S.make("step", 0.1, total)
    assert step(39) == pytest.approx(0.1) and step(40) == pytest.approx(0.01)
    multi = S.make("multistep", 0.1, total)
    assert multi(59) == pytest.approx(0.1) and multi(60) == pytest.approx(0.01) and multi(90) == pytest.approx(0.001)
    assert S.make("exponential", 0.1, total)(total) == pytest.approx(0.001)
    cos = S.make("cosine", 0.1, total)
    assert cos(total // 2) == pytest.approx(0.05) and cos(total) == pytest.approx(0.0, abs=1e-12)
    sgdr = S.make("cosine_restarts", 0.1, total)
    assert sgdr(total // 7) == pytest.approx(0.1)  # the first restart
    one = S.make("onecycle", 0.1, total)
    assert max(one(t) for t in range(total)) == pytest.approx(0.1, rel=1e-3)
    warm = S.make("cosine", 0.1, total, warmup=10)
    assert warm(0) == 0.0 and warm(5) == pytest.approx(0.05) and warm(10) == pytest.approx(0.1)
    assert isinstance(S.make("plateau", 0.1, total), S.ReduceOnPlateau)
    assert set(S.SCHEDULES) <= {"constant", "step", "multistep", "exponential", "cosine", "cosine_restarts",
                                "onecycle", "plateau", "linear", "polynomial", "inverse_time", "cyclic"}
    for name in S.SCHEDULES:
        assert math.isfinite(S.make(name, 0.1, total)(3))
    assert S.make("linear", 0.1, total)(total // 2) == pytest.approx(0.05)
    assert S.make("polynomial", 0.1, total)(total // 2) == pytest.approx(0.025)
    assert S.make("inverse_time", 0.1, total)(total) == pytest.approx(0.01)
    cyc = S.make("cyclic", 0.1, total)
    assert cyc(0) == pytest.approx(0.01) and cyc(total // 8) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown schedule 'sawtooth'"):
        S.make("sawtooth", 0.1, total)
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        S.make("cosine", 0.1, total, warmup=-1)
