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


# Minibatches drawn by a shuffle see a repeated row twice where a weighted row comes once, so the
# fits differ (scikit-learn runs this check on its MLPs only with lbfgs, a full-batch solver, or
# with a loose tol): weights are tested below against the weighted loss itself.
_WEIGHTS = {"check_sample_weight_equivalence_on_dense_data": "stochastic minibatches: not equivalent to repeats"}


@parametrize_with_checks([MLPClassifier(random_state=0), MLPRegressor(random_state=0)],
                         expected_failed_checks=lambda est: _WEIGHTS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def test_classifier_learns_digits_with_string_labels(digits):
    X_train, X_test, y_train, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=20, learning_rate_init=1e-2, batch_size=32,
                        random_state=0).fit(X_train, names[y_train])
    assert list(clf.classes_) == sorted(names)
    assert clf.score(X_test, names[y_test]) > 0.95
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test))
    assert clf.n_iter_ == len(clf.loss_curve_) <= 20 and clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_grid_search_in_parallel_matches_serial(digits):
    X_train, _, y_train, _ = digits
    grid = {"learning_rate_init": [1e-3, 1e-2], "solver": ["adam", "sgd"]}
    base = MLPClassifier(hidden_layer_sizes=(64,), max_iter=6, batch_size=32, random_state=0)
    serial = GridSearchCV(base, grid, cv=3, n_jobs=1).fit(X_train, y_train)
    parallel = GridSearchCV(base, grid, cv=3, n_jobs=2).fit(X_train, y_train)
    assert serial.best_params_ == parallel.best_params_
    np.testing.assert_array_equal(serial.cv_results_["mean_test_score"], parallel.cv_results_["mean_test_score"])
    assert serial.best_params_["solver"] == "adam"


def test_randomized_search_and_pipelines(digits):
    stats = pytest.importorskip("scipy.stats")
    X_train, X_test, y_train, y_test = digits
    search = RandomizedSearchCV(MLPClassifier(max_iter=8, random_state=0),
                                {"learning_rate_init": stats.loguniform(1e-3, 3e-2), "batch_size": [32, 64],
                                 "hidden_layer_sizes": [(32,), (64,)], "schedule": ["constant", "cosine"]},
                                n_iter=3, cv=2, n_jobs=2, random_state=0).fit(X_train, y_train)
    assert len(search.cv_results_["params"]) == 3 and search.best_score_ > 0.85
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=40, random_state=0))
    assert cross_val_score(pipe, X_train, y_train, cv=2).mean() > 0.9


def test_get_set_params_and_clone():
    clf = MLPClassifier(learning_rate_init=0.05, solver="lion")
    assert clf.get_params()["learning_rate_init"] == 0.05 and clf.get_params()["solver"] == "lion"
    clf.set_params(learning_rate_init=0.01, hidden_layer_sizes=(8, 8))
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and twin is not clf


def test_parameters_and_defaults_are_scikit_learns():
    sk = pytest.importorskip("sklearn.neural_network")
    for ours, theirs in ((MLPClassifier(), sk.MLPClassifier()), (MLPRegressor(), sk.MLPRegressor())):
        mine, want = ours.get_params(), theirs.get_params()
        assert set(want) <= set(mine)
        assert {k: mine[k] for k in want} == want, type(ours).__name__
    assert MLPRegressor().loss == "squared_error" and clone(MLPRegressor(loss="poisson")).loss == "poisson"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    fits = [MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0, loss=loss).fit(X, y)
            for loss in ("squared_error", None)]  # None: the same loss
    assert all(np.array_equal(a, b) for a, b in zip(fits[0].coefs_, fits[1].coefs_))


def test_regressor_recovers_a_linear_map_and_multi_output():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 2))
    y = 3.0 * X[:, 0] - X[:, 1] + 0.05 * rng.standard_normal(400)
    reg = MLPRegressor(hidden_layer_sizes=(), learning_rate_init=3e-2, max_iter=40, alpha=0.0, batch_size=32,
                       random_state=0).fit(X, y)
    W = reg.model_.W[0][:, 0]
    np.testing.assert_allclose(W, [3.0, -1.0], atol=0.02)
    assert reg.predict(X).shape == (400,) and reg.score(X, y) > 0.99
    Y = np.stack([y, -y], axis=1)
    multi = MLPRegressor(hidden_layer_sizes=(), learning_rate_init=3e-2, max_iter=40, alpha=0.0, batch_size=32,
                         random_state=0).fit(X, Y)
    assert multi.predict(X).shape == (400, 2) and multi.score(X, Y) > 0.99


def test_fitted_estimator_pickles_and_keeps_training_views(digits):
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier(max_iter=3, random_state=0).fit(X_train, y_train)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X_test), clf.predict_proba(X_test))
    # the layer views still point into the one flat buffer
    back.model_.params[:] = 0
    assert not back.model_.W[0].any()


@pytest.mark.parametrize("kwargs, match", [
    ({"solver": "adamz"}, "solver must be one of"),
    ({"solver": "lbfgs"}, "solver='lbfgs' is not offered"),
    ({"learning_rate_init": 0.0}, "learning_rate_init must be > 0"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"schedule": "sawtooth"}, "unknown schedule"),
    ({"activation": "gelu"}, "activation must be one of"),
    ({"learning_rate": "cyclic"}, "learning_rate must be"),
    ({"alpha": -1.0}, "alpha must be"),
])
def test_bad_settings_raise_at_fit(digits, kwargs, match):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**kwargs).fit(X_train, y_train)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_results_comparable_to_scikit_learns_mlp(digits, solver):
    """Same data and settings as sklearn.neural_network.MLPClassifier: held-out accuracy within
    2 points (the weights start differently and Adam puts epsilon elsewhere)."""
    from sklearn.neural_network import MLPClassifier as Theirs
    X_train, X_test, y_train, y_test = digits
    kw = dict(hidden_layer_sizes=(64,), solver=solver, max_iter=60, learning_rate_init=1e-2 if solver == "sgd" else 1e-3,
              random_state=0)
    ours = MLPClassifier(**kw).fit(X_train, y_train)
    theirs = Theirs(**kw).fit(X_train, y_train)
    assert abs(ours.score(X_test, y_test) - theirs.score(X_test, y_test)) < 0.02
    assert ours.score(X_test, y_test) > 0.95
    assert abs(ours.loss_ - theirs.loss_) < 0.05  # the same loss, L2 term included
    for name in ("loss_", "best_loss_", "loss_curve_", "t_", "n_iter_", "n_layers_", "n_outputs_", "out_activation_"):
        assert hasattr(ours, name), name
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in theirs.intercepts_]
    assert ours.n_layers_ == theirs.n_layers_ == 3 and ours.t_ == theirs.t_ == len(X_train) * ours.n_iter_
    assert ours.best_loss_ == min(ours.loss_curve_) and ours.validation_scores_ is None


def test_early_stopping_tol_and_learning_rate_rules(digits):
    X_train, _, y_train, _ = digits
    es = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3, max_iter=200,
                       random_state=0).fit(X_train, y_train)
    assert es.best_loss_ is None and len(es.validation_scores_) == es.n_iter_ < 200
    assert es.best_validation_score_ == max(es.validation_scores_) > 0.8  # chance: 0.5
    quick = MLPClassifier(hidden_layer_sizes=(32,), tol=10.0, n_iter_no_change=2, max_iter=50, random_state=0)
    assert quick.fit(X_train, y_train).n_iter_ == 4  # no epoch improves by 10: more than 2 misses after the first
    inv = MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate="invscaling", power_t=0.5,
                        learning_rate_init=0.5, max_iter=2, random_state=0)
    with pytest.warns(Warning):
        inv.fit(X_train, y_train)
    assert inv._lr == pytest.approx(0.5 / (2 * len(X_train) + 1) ** 0.5)
    ada = MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate="adaptive", tol=10.0,
                        n_iter_no_change=1, learning_rate_init=0.1, max_iter=8, random_state=0)
    with pytest.warns(Warning):
        ada.fit(X_train, y_train)
    assert ada._lr == pytest.approx(0.1 / 5 ** 3)  # divided by 5 every second epoch


def test_partial_fit_warm_start_and_sample_weight(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=1e-2, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X_train[:100], y_train[:100])
    scores = []
    for k in range(6):
        clf.partial_fit(X_train, y_train, classes=np.arange(10))
        scores.append(clf.score(X_test, y_test))
    assert clf.n_iter_ == 6 and scores[-1] > scores[0] and scores[-1] > 0.9
    warm = MLPClassifier(hidden_layer_sizes=(32,), max_iter=3, warm_start=True, random_state=0)
    with pytest.warns(Warning):
        warm.fit(X_train, y_train)
        first = warm.coefs_[0].copy()
        warm.fit(X_train, y_train)
    assert warm.n_iter_ == 6 and not np.array_equal(first, warm.coefs_[0])
    # full batch, no shuffle: integer weights are repeated rows
    w = np.arange(len(X_train)) % 3
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=10_000, shuffle=False, max_iter=5, momentum=0.0,
              learning_rate_init=0.1, alpha=0.0, random_state=0)
    with pytest.warns(Warning):
        weighted = MLPRegressor(**kw).fit(X_train, y_train.astype(float), sample_weight=w)
        repeated = MLPRegressor(**kw).fit(np.repeat(X_train, w, axis=0), np.repeat(y_train.astype(float), w))
    np.testing.assert_allclose(weighted.predict(X_test), repeated.predict(X_test), rtol=1e-9, atol=1e-9)


def test_alpha_is_scikit_learns_l2_on_the_weights_per_batch():
    """A linear regressor, full batch, plain SGD, against the update written out:
    W -= lr (X'(XW + b - y) / n + alpha W / n), b -= lr mean(XW + b - y); loss_ adds 0.5 alpha |W|^2 / n."""
    import warnings
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    alpha, lr, steps = 0.7, 0.05, 4
    reg = MLPRegressor(hidden_layer_sizes=(), solver="sgd", momentum=0.0, alpha=alpha, learning_rate_init=lr,
                       batch_size=50, shuffle=False, max_iter=steps, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)
    W0 = MLPRegressor(hidden_layer_sizes=(), random_state=0)._new_model(3, 1, int(
        np.random.RandomState(0).randint(np.iinfo(np.int32).max))).W[0].copy()
    W, b, losses = W0[:, 0].copy(), 0.0, []
    for _ in range(steps):
        r = X @ W + b - y
        losses.append(0.5 * np.mean(r * r) + 0.5 * alpha * (W @ W) / 50)
        W, b = W - lr * (X.T @ r / 50 + alpha * W / 50), b - lr * r.mean()
    np.testing.assert_allclose(reg.coefs_[0][:, 0], W, rtol=1e-12)
    np.testing.assert_allclose(reg.intercepts_[0], [b], rtol=1e-12)
    np.testing.assert_allclose(reg.loss_curve_, losses, rtol=1e-12)


def _labels(y):
    """Three labels per digit, several true at once: odd, above 4, a 3."""
    return np.stack([y % 2, y > 4, y == 3], axis=1).astype(np.int64)


def test_several_labels_per_row_as_scikit_learn(digits):
    """A 0/1 indicator matrix y: one sigmoid output per label and scikit-learn's binary log loss
    (summed over the labels, averaged over the rows), as sklearn.neural_network.MLPClassifier
    trains it; held-out subset accuracy within 3 points of scikit-learn's and the loss within 0.05
    (the weights start differently)."""
    from sklearn.neural_network import MLPClassifier as Theirs
    X_train, X_test, y_train, y_test = digits
    Y_train, Y_test = _labels(y_train), _labels(y_test)
    kw = dict(hidden_layer_sizes=(64,), max_iter=60, random_state=0)
    ours = MLPClassifier(**kw).fit(X_train, Y_train)
    theirs = Theirs(**kw).fit(X_train, Y_train)
    assert abs(ours.score(X_test, Y_test) - theirs.score(X_test, Y_test)) < 0.03
    assert ours.score(X_test, Y_test) > 0.85  # all zeros (an even digit under 5) would score 0.3
    assert abs(ours.loss_ - theirs.loss_) < 0.05
    assert ours.out_activation_ == theirs.out_activation_ == "logistic"
    assert ours.n_outputs_ == theirs.n_outputs_ == 3
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    pred, proba = ours.predict(X_test), ours.predict_proba(X_test)
    assert pred.dtype == theirs.predict(X_test).dtype and pred.shape == proba.shape == Y_test.shape
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(np.int64))
    # the loss is scikit-learn's: the mean over rows of the labels' summed binary cross-entropies
    from fastopt.nn import binary_log_loss
    z = ours.model_.forward(X_test)
    p = 1 / (1 + np.exp(-z))
    expected = -np.mean(np.sum(Y_test * np.log(p) + (1 - Y_test) * np.log(1 - p), axis=1))
    value, grad = binary_log_loss(z, Y_test)
    np.testing.assert_allclose(value, expected, rtol=1e-10)
    np.testing.assert_allclose(grad, (p - Y_test) / len(z), rtol=1e-9, atol=1e-15)


def test_several_labels_early_stopping_partial_fit_and_errors(digits):
    X_train, X_test, y_train, y_test = digits
    Y_train = _labels(y_train)
    es = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, max_iter=40, random_state=0).fit(X_train, Y_train)
    assert es.best_validation_score_ == max(es.validation_scores_) > 0.7  # subset accuracy (all zeros: 0.3)
    inc = MLPClassifier(hidden_layer_sizes=(32,), random_state=0)
    for _ in range(5):
        inc.partial_fit(X_train, Y_train, classes=[0, 1, 2])
    assert inc.n_iter_ == 5 and len(inc.loss_curve_) == 5 and np.all(np.diff(inc.loss_curve_) < 0), inc.loss_curve_
    with pytest.raises(ValueError, match="needs softmax outputs"):
        MLPClassifier(loss="focal", max_iter=2).fit(X_train, Y_train)
    warm = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, warm_start=True).fit(X_train, y_train)
    with pytest.raises(ValueError, match="fitted on labels"):
        warm.fit(X_train, Y_train)
    with pytest.raises(ValueError, match="multiclass-multioutput"):
        MLPClassifier(max_iter=2).fit(X_train, np.stack([y_train, y_train], axis=1))
    restored = pickle.loads(pickle.dumps(es))
    np.testing.assert_array_equal(restored.predict(X_test), es.predict(X_test))


def test_poisson_regression_as_scikit_learn():
    """loss="poisson" (scikit-learn's MLPRegressor option): exp outputs and half the Poisson
    deviance; on counts drawn from a log-linear rate, the held-out mean Poisson deviance within
    10% of scikit-learn's with the same settings (the weights start differently)."""
    from sklearn.metrics import mean_poisson_deviance
    from sklearn.neural_network import MLPRegressor as Theirs
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 5))
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1] + 0.2)).astype(np.float64)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    kw = dict(loss="poisson", hidden_layer_sizes=(32,), max_iter=100, random_state=0)
    ours = MLPRegressor(**kw).fit(X_train, y_train)
    theirs = Theirs(**kw).fit(X_train, y_train)
    pred = ours.predict(X_test)
    assert ours.out_activation_ == theirs.out_activation_ == "exp" and np.all(pred > 0)
    ours.set_params(loss=None)  # the fitted link stays until the next fit
    assert ours.out_activation_ == "exp" and np.array_equal(ours.predict(X_test), pred)
    ours_dev, theirs_dev = mean_poisson_deviance(y_test, pred), mean_poisson_deviance(y_test, theirs.predict(X_test))
    assert ours_dev < 1.1 * theirs_dev, (ours_dev, theirs_dev)
    assert ours_dev < 0.9 * mean_poisson_deviance(y_test, np.full_like(y_test, y_train.mean()))
    es = MLPRegressor(**{**kw, "early_stopping": True}).fit(X_train, y_train)
    assert es.best_validation_score_ == max(es.validation_scores_) > 0.2  # R^2 of exp(z)
    with pytest.raises(ValueError, match="negative values"):
        MLPRegressor(loss="poisson").fit(X_train, -y_train)
    with pytest.raises(ValueError, match="loss must be one of"):
        MLPRegressor(loss="huber").fit(X_train, y_train)
    with pytest.raises(ValueError, match="needs exp outputs"):
        MLPClassifier(loss="poisson").fit(X_train, y_train > 1)


def test_two_classes_in_one_logistic_output_as_scikit_learn(digits):
    """Two classes: one logistic output and the binary log loss, as scikit-learn's MLP has them
    (the same shapes of coefs_, n_outputs_ 1), held-out accuracy within 2 points and the loss
    within 0.05 of its; with a softmax loss (focal) two softmax outputs."""
    from sklearn.neural_network import MLPClassifier as Theirs
    X_train, X_test, y_train, y_test = digits
    names = np.array(["even", "odd"])
    kw = dict(hidden_layer_sizes=(32,), max_iter=40, random_state=0)
    ours = MLPClassifier(**kw).fit(X_train, names[y_train % 2])
    theirs = Theirs(**kw).fit(X_train, names[y_train % 2])
    assert ours.out_activation_ == theirs.out_activation_ == "logistic" and ours.n_outputs_ == theirs.n_outputs_ == 1
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    assert abs(ours.score(X_test, names[y_test % 2]) - theirs.score(X_test, names[y_test % 2])) < 0.02
    assert abs(ours.loss_ - theirs.loss_) < 0.05
    proba = ours.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(ours.predict(X_test), names[(proba[:, 1] > 0.5).astype(int)])
    es = MLPClassifier(**kw, early_stopping=True).fit(X_train, y_train % 2)
    assert es.best_validation_score_ == max(es.validation_scores_) > 0.8  # chance: 0.5
    focal = MLPClassifier(**kw, loss="focal").fit(X_train, y_train % 2)
    assert focal.out_activation_ == "softmax" and focal.n_outputs_ == 2
    inc = MLPClassifier(hidden_layer_sizes=(8,), random_state=0).partial_fit(X_train, y_train % 2, classes=[0, 1])
    assert inc.n_outputs_ == 1


def test_a_refused_fit_leaves_the_estimator_as_it_was(digits):
    """Targets refused by fit or partial_fit (a loss that does not fit them, a label outside the
    classes given, a bad setting) change nothing: classes_, outputs and predictions stay."""
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X_train, y_train)
    before = (clf.classes_.copy(), clf.n_outputs_, clf.out_activation_, clf.predict(X_test))
    clf.set_params(loss="focal")
    with pytest.raises(ValueError, match="needs softmax outputs"):
        clf.fit(X_train, _labels(y_train))
    clf.set_params(loss=None, max_iter=0)
    with pytest.raises(ValueError, match="max_iter must be an int >= 1"):
        clf.fit(X_train, y_train % 2)
    after = (clf.classes_, clf.n_outputs_, clf.out_activation_, clf.predict(X_test))
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1:3] == before[1:3]
    np.testing.assert_array_equal(after[3], before[3])
    inc = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="labels not in classes_"):
        inc.partial_fit(X_train, y_train, classes=[0, 1])
    assert not hasattr(inc, "classes_")
    inc.partial_fit(X_train, y_train, classes=np.arange(10))  # the first call, again
    assert inc.n_outputs_ == 10
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X_train, y_train.astype(float))
    with pytest.raises(ValueError, match="max_iter"):
        reg.set_params(max_iter=0).fit(X_train, np.stack([y_train, y_train], axis=1).astype(float))
    assert reg.predict(X_test).shape == (len(X_test),)  # still the one-output model's predictions
