"""The scikit-learn estimators: scikit-learn's own estimator checks, and the searches users run."""
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastopt.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@parametrize_with_checks([MLPClassifier(random_state=0), MLPRegressor(random_state=0)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def test_classifier_learns_digits_with_string_labels(digits):
    X_train, X_test, y_train, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = MLPClassifier(epochs=20, lr=1e-2, random_state=0).fit(X_train, names[y_train])
    assert list(clf.classes_) == sorted(names)
    assert clf.score(X_test, names[y_test]) > 0.95
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test))
    assert clf.n_iter_ == len(clf.loss_curve_) <= 20 and clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_grid_search_in_parallel_matches_serial(digits):
    X_train, _, y_train, _ = digits
    grid = {"lr": [1e-3, 1e-2], "optimizer": ["adam", "sgd"]}
    base = MLPClassifier(epochs=6, random_state=0)
    serial = GridSearchCV(base, grid, cv=3, n_jobs=1).fit(X_train, y_train)
    parallel = GridSearchCV(base, grid, cv=3, n_jobs=2).fit(X_train, y_train)
    assert serial.best_params_ == parallel.best_params_
    np.testing.assert_array_equal(serial.cv_results_["mean_test_score"], parallel.cv_results_["mean_test_score"])
    assert serial.best_params_["optimizer"] == "adam"


def test_randomized_search_and_pipelines(digits):
    stats = pytest.importorskip("scipy.stats")
    X_train, X_test, y_train, y_test = digits
    search = RandomizedSearchCV(MLPClassifier(epochs=8, random_state=0),
                                {"lr": stats.loguniform(1e-3, 3e-2), "batch_size": [32, 64],
                                 "hidden_layer_sizes": [(32,), (64,)], "schedule": ["constant", "cosine"]},
                                n_iter=3, cv=2, n_jobs=2, random_state=0).fit(X_train, y_train)
    assert len(search.cv_results_["params"]) == 3 and search.best_score_ > 0.85
    pipe = make_pipeline(StandardScaler(), MLPClassifier(epochs=10, random_state=0))
    assert cross_val_score(pipe, X_train, y_train, cv=2).mean() > 0.9


def test_get_set_params_and_clone():
    clf = MLPClassifier(lr=0.05, optimizer="lion")
    assert clf.get_params()["lr"] == 0.05 and clf.get_params()["optimizer"] == "lion"
    clf.set_params(lr=0.01, hidden_layer_sizes=(8, 8))
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and twin is not clf


def test_regressor_recovers_a_linear_map_and_multi_output():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 2))
    y = 3.0 * X[:, 0] - X[:, 1] + 0.05 * rng.standard_normal(400)
    reg = MLPRegressor(hidden_layer_sizes=(), lr=3e-2, epochs=40, patience=0, random_state=0).fit(X, y)
    W = reg.model_.W[0][:, 0]
    np.testing.assert_allclose(W, [3.0, -1.0], atol=0.02)
    assert reg.predict(X).shape == (400,) and reg.score(X, y) > 0.99
    Y = np.stack([y, -y], axis=1)
    multi = MLPRegressor(hidden_layer_sizes=(), lr=3e-2, epochs=40, patience=0, random_state=0).fit(X, Y)
    assert multi.predict(X).shape == (400, 2) and multi.score(X, Y) > 0.99


def test_fitted_estimator_pickles_and_keeps_training_views(digits):
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier(epochs=3, random_state=0).fit(X_train, y_train)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X_test), clf.predict_proba(X_test))
    # the layer views still point into the one flat buffer
    back.model_.params[:] = 0
    assert not back.model_.W[0].any()


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizer": "adamz"}, "unknown optimizer"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"schedule": "sawtooth"}, "unknown schedule"),
    ({"activation": "gelu"}, "unknown activation"),
])
def test_bad_settings_raise_at_fit(digits, kwargs, match):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**kwargs).fit(X_train, y_train)
