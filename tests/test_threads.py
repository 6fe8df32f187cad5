"""The thread team: threadpoolctl, the count read at every call, fork, many Python threads."""
import os
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest

import fastopt
from fastopt import _core

threadpoolctl = pytest.importorskip("threadpoolctl")

BIG = 1 << 18  # above the size where a call uses more than one thread


def _adam_problem(n=BIG, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(np.float32) for _ in range(2)] + [np.zeros(n, np.float32) for _ in range(2)]


def test_threadpoolctl_lists_and_limits_fastopt(restore_threads):
    fastopt.set_num_threads(3)
    info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastopt"]
    assert len(info) == 1 and info[0]["num_threads"] == 3 and info[0]["version"] == fastopt.__version__
    with threadpoolctl.threadpool_limits(1):
        assert fastopt.get_num_threads() == 1
    assert fastopt.get_num_threads() == 3
    with threadpoolctl.threadpool_limits({"fastopt": 2}):
        assert fastopt.get_num_threads() == 2


def test_limit_after_first_use_takes_effect(restore_threads):
    p = _adam_problem()
    fastopt.adam_(*p, step=1)  # a first parallel call
    with threadpoolctl.threadpool_limits(1):
        assert fastopt.get_num_threads() == 1
        fastopt.adam_(*p, step=2)
    assert fastopt.get_num_threads() == max(1, fastopt.get_num_threads())


def _run(code, env=None, timeout=60):
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, cwd=tempfile.gettempdir())


def test_omp_num_threads_read_at_each_call():
    code = ("import os, fastopt; a = fastopt.get_num_threads(); os.environ['OMP_NUM_THREADS'] = '5'; "
            "print(a, fastopt.get_num_threads())")
    out = _run(code, {"OMP_NUM_THREADS": "3"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "5"]


def test_set_num_threads_zero_restores_default(restore_threads):
    fastopt.set_num_threads(7)
    fastopt.set_num_threads(0)
    assert fastopt.get_num_threads() == _core.get_num_threads() >= 1 and _core._thread_setting() == 0


FORK_CODE = """
import os, sys, numpy as np, fastopt, multiprocessing as mp
fastopt.set_num_threads(4)
n = 1 << 18
p = [np.ones(n, np.float32) for _ in range(4)]
fastopt.adam_(*p, step=1)                       # the parent ran a parallel step
def child(q):
    c = [np.ones(n, np.float32) for _ in range(4)]
    fastopt.adam_(*c, step=1)                   # and the child runs one too
    q.put(float(c[0][0]))
pid = os.fork()
if pid == 0:
    c = [np.ones(n, np.float32) for _ in range(4)]
    fastopt.adam_(*c, step=1)
    os._exit(0 if abs(c[0][0] - p[0][0]) == 0 else 3)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0, status
q = mp.get_context("fork").Queue()
proc = mp.get_context("fork").Process(target=child, args=(q,))
proc.start(); proc.join(30)
assert proc.exitcode == 0 and q.get(timeout=5) == float(p[0][0])
print("ok")
"""


def test_fork_after_parallel_step_does_not_hang():
    out = _run(FORK_CODE, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_threads_on_separate_arrays_give_the_sequential_result(restore_threads):
    fastopt.set_num_threads(2)
    problems = [_adam_problem(seed=s) for s in range(4)]
    expected = [[a.copy() for a in p] for p in problems]
    for p in expected:
        for step in range(1, 4):
            fastopt.adam_(*p, step=step)

    def work(p):
        for step in range(1, 4):
            fastopt.adam_(*p, step=step)

    threads = [threading.Thread(target=work, args=(p,)) for p in problems]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(problems, expected):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_more_threads_than_items_and_many_threads_match_one(restore_threads):
    results = []
    for nt in (1, 2, 3, 16, 64):
        fastopt.set_num_threads(nt)
        p = _adam_problem(n=(1 << 16) + 5)
        fastopt.adam_(*p, step=1)
        results.append(p[0])
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.parametrize("nt", [2, 3, 7, 65, 80])
@pytest.mark.parametrize("sizes", [[(1 << 14) * 97 + 3, 5, (1 << 14) * 31 + 1, 1 << 14, 777],
                                   [(1 << 14) * 5, 1, 2, 3]])  # the second: runs that hold no item
def test_each_item_runs_once_whatever_the_runs(restore_threads, nt, sizes):
    # Items are cut into runs of about equal elements, one per thread (at most 64), which threads
    # then share: lists whose item count no thread count divides, with arrays of odd sizes, give
    # the one-thread result bit for bit (an item skipped or run twice would not), for an update
    # and a norm.
    rng = np.random.default_rng(nt)
    start = [[rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(2)]
    results, norms = [], []
    for threads in (1, nt):
        fastopt.set_num_threads(threads)
        p, g = [a.copy() for a in start[0]], [a.copy() for a in start[1]]
        m, v = [np.zeros(n, np.float32) for n in sizes], [np.zeros(n, np.float32) for n in sizes]
        for step in (1, 2):
            fastopt.adam_(p, g, m, v, step=step)
        results.append(p + m + v)
        norms.append(fastopt.functional.global_norm(g))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_array_equal(got, want)
    assert norms[1] == norms[0]
    assert not np.array_equal(results[0][0], start[0][0])


def test_config_reports_the_team():
    c = fastopt.config()["thread_pool"]
    assert c["max_threads"] == 1024 and c["workers"] >= 0 and c["spin_us"] >= 0


def test_trainer_threads_setting_is_checked_and_restored(restore_threads):
    from fastopt.nn import MLP, Dense
    from fastopt.train import Trainer
    from fastopt import threads as T
    model = MLP(4, [Dense(3, "softmax")])
    for bad in ("many", 0, -1, 2.5, True):
        with pytest.raises(ValueError, match="threads must be"):
            Trainer(model, threads=bad)
    fastopt.set_num_threads(2)
    X = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    y = np.arange(40) % 3
    Trainer(model, threads=1).fit(X, y, epochs=1, verbose=False)
    assert fastopt.get_num_threads() == 2  # the fit's limit ends with the fit
    with T.limited(1, 1):
        assert fastopt.get_num_threads() == 1
    assert fastopt.get_num_threads() == 2
    blas, kernels = T.plan([784, 256, 10], 128)
    assert 1 <= blas <= T._cpus() and 1 <= kernels <= fastopt.get_num_threads()
    assert T.matmul_threads([64, 64, 10], 32) == 1 and T.matmul_threads([784, 256, 10], 128) == 4


def test_free_cores_confirms_what_it_sees_before_it_costs_a_core(monkeypatch):
    from fastopt import threads as T
    monkeypatch.setattr(T, "_cpus", lambda: 2)
    monkeypatch.setattr(T, "CONFIRM", (7, 0.0))

    def readings(values):
        it = iter(values)
        monkeypatch.setattr(T, "_runnable", lambda: next(it))

    readings([0] * 5)
    assert T._free_cores(5, 0.0) == 2
    readings([1, 1, 1, 0, 0] + [0, 0, 1, 0, 0, 0, 0])  # a blip: the second look sees it gone
    assert T._free_cores(5, 0.0) == 2
    readings([1, 1, 1, 1, 0] + [1, 1, 0, 1, 1, 1, 1])  # a busy process: it stays
    assert T._free_cores(5, 0.0) == 1
    readings([3] * 12)
    assert T._free_cores(5, 0.0) == 1  # never fewer than one
    readings([None])
    assert T._free_cores(5, 0.0) == 2  # unknown: every CPU


def test_trainer_labels_outside_the_outputs_are_refused():
    from fastopt.nn import MLP, Dense
    from fastopt.train import Trainer
    model = MLP(2, [Dense(3, "softmax")])
    before = model.params.copy()
    with pytest.raises(ValueError, match=r"labels outside \[0, 3\)"):
        Trainer(model).fit(np.zeros((4, 2)), np.array([0, 1, 2, 3]), epochs=1, verbose=False)
    np.testing.assert_array_equal(model.params, before)


def test_thread_parallel_min_is_per_thread_and_changes_no_result(restore_threads):
    """A thread's own minimum for helpers to join (fastopt.torch sets one around its step): it
    returns the previous value, does not leak to other threads, and results stay the same."""
    fastopt.set_num_threads(2)
    want = _adam_problem(n=(1 << 17) + 3)
    fastopt.adam_(*want, step=1)
    seen = []
    assert _core._set_thread_parallel_min(1 << 20) == 0
    try:
        t = threading.Thread(target=lambda: seen.append(_core._set_thread_parallel_min(0)))
        t.start()
        t.join()
        got = _adam_problem(n=(1 << 17) + 3)
        fastopt.adam_(*got, step=1)
    finally:
        assert _core._set_thread_parallel_min(0) == 1 << 20
    assert seen == [0]  # the other thread had the default
    np.testing.assert_array_equal(got[0], want[0])
    with pytest.raises(ValueError, match="n must be >= 0"):
        _core._set_thread_parallel_min(-1)


def test_torch_step_restores_the_thread_parallel_min(restore_threads):
    torch = pytest.importorskip("torch")
    import fastopt.torch as ft
    t = torch.nn.Parameter(torch.randn(1000))
    opt = ft.Adam([t], lr=1e-3)
    t.grad = torch.randn(1000)
    opt.step()
    assert _core._set_thread_parallel_min(0) == 0 and _core._set_thread_omp_team(False) is False
    t.grad = torch.randn(1000).to_sparse()  # refused: the step raises, the settings are restored
    with pytest.raises(ValueError, match="sparse"):
        opt.step()
    assert _core._set_thread_parallel_min(0) == 0 and _core._set_thread_omp_team(False) is False


def _torch_team():
    """torch, where its intra-op threads are an OpenMP team that fastopt finds; else skip."""
    torch = pytest.importorskip("torch")
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch's parallel backend is not OpenMP")
    assert _core._omp_team_available()  # torch's libgomp is loaded: it must be found
    return torch


@pytest.mark.parametrize("kernel", ["adam", "lamb", "clip_grad_norm", "adam_int8"])
def test_omp_team_is_per_thread_and_changes_no_result(restore_threads, kernel):
    """A thread's calls on the process's OpenMP team (fastopt.torch's step sets it): the same bits
    as on fastopt's own team, for a sweep, a two-pass rule with norms, a reduction and the 8-bit
    path; the setting returns its previous value and does not leak to other threads."""
    _torch_team()
    fastopt.set_num_threads(2)
    n = 3 * BIG + 5

    def run():
        p, g, m, v = _adam_problem(n)
        if kernel == "adam":
            fastopt.adam_(p, g, m, v, step=3)
            return [p, m, v]
        if kernel == "lamb":  # a list: norms per array, two passes per group of arrays
            ps, gs, ms, vs = ([a, a[: BIG + 1].copy()] for a in (p, g, m, v))
            fastopt.lamb_(ps, gs, ms, vs, step=3)
            return ps + ms + vs
        if kernel == "clip_grad_norm":
            return [np.array(fastopt.clip_grad_norm_(g, 1e-2)), g]
        from fastopt import optim
        opt = optim.Adam([p], lr=1e-3, state_dtype="int8")
        for _ in range(2):
            opt.step([g])
        return [p] + [opt.state[0][k].dequantize() for k in ("exp_avg", "exp_avg_sq")]

    want = run()
    seen = []
    assert _core._set_thread_omp_team(True) is False
    try:
        t = threading.Thread(target=lambda: seen.append(_core._set_thread_omp_team(False)))
        t.start()
        t.join()
        got = run()
    finally:
        assert _core._set_thread_omp_team(False) is True
    assert seen == [False]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


_TEAM_STEP = """
import os, torch, numpy as np, fastopt, fastopt.torch as ft
from fastopt import _core
torch.set_num_threads(2); fastopt.set_num_threads(2)
ft.TORCH_TEAM = {team}
torch.manual_seed(0)
w = [torch.nn.Parameter(torch.randn(3 * 2**18 + 5)) for _ in range(2)]
ref = [torch.nn.Parameter(x.detach().clone()) for x in w]
opt, ropt = ft.Adam(w, lr=1e-2), torch.optim.Adam(ref, lr=1e-2)
def steps(k):
    for _ in range(k):
        for a, b in zip(w, ref):
            g = torch.randn_like(a)
            a.grad, b.grad = g, g.clone()
        opt.step(); ropt.step()
        for a, b in zip(w, ref):
            torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-6)
steps(3)
print("workers", fastopt.config()["thread_pool"]["workers"])
if {fork}:
    rng = np.random.default_rng(0)
    p0, g0 = (rng.standard_normal(3 * 2**18).astype(np.float32) for _ in range(2))
    want = [p0.copy(), g0, np.zeros_like(p0), np.zeros_like(p0)]
    fastopt.adam_(*want, step=1)
    _core._set_thread_omp_team(True)  # as inside a step: the forking thread's setting is on
    pid = os.fork()
    if pid == 0:
        try:
            # torch's OpenMP team did not survive the fork (torch's own parallel ops need
            # torch.set_num_threads(1) here); fastopt's calls go to its rebuilt team
            assert not _core._omp_team_available()
            got = [p0.copy(), g0, np.zeros_like(p0), np.zeros_like(p0)]
            fastopt.adam_(*got, step=1)  # the inherited setting is on: the call must not use the team
            np.testing.assert_array_equal(got[0], want[0])
            assert _core._set_thread_omp_team(True) is True  # the inherited setting ...
            assert _core._set_thread_omp_team(False) is False  # ... and turning it on again is refused
            os._exit(0)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("team", [True, False])
def test_torch_step_runs_on_torchs_team(team):
    """fastopt.torch's step while torch runs 2 threads: on torch's OpenMP team fastopt's own team
    never starts a worker (TORCH_TEAM off: it does), and the parameters follow torch.optim.Adam
    (the kernel tests' float32 tolerance)."""
    _torch_team()
    r = _run(_TEAM_STEP.format(team=team, fork=False), timeout=120)
    assert r.returncode == 0, r.stderr
    workers = int(r.stdout.split("workers")[1].split()[0])
    assert (workers == 0) if team else (workers >= 1)


def test_torch_step_in_a_forked_child_uses_fastopts_team():
    """After steps on torch's team, a forked child (multiprocessing's fork start) whose forking
    thread had the team on runs its calls on fastopt's rebuilt team: they finish, with the bits
    the parent's calls gave."""
    _torch_team()
    r = _run(_TEAM_STEP.format(team=True, fork=True), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "child 0" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("first", ["", "import sklearn.cluster"])
def test_torch_step_uses_no_more_threads_than_torchs_team(first):
    """fastopt set to 4 threads, torch to 2: the step on torch's team starts no thread (without
    the cap the OpenMP runtime would start two more for a 4-thread region).  Also with
    scikit-learn imported first, whose wheels bring a libgomp of their own that then comes first
    among the loaded libraries: the step must use the one torch uses, not start another team."""
    _torch_team()
    if first:
        pytest.importorskip("sklearn")
    code = first + """
import os, torch, fastopt, fastopt.torch as ft
torch.set_num_threads(2); fastopt.set_num_threads(4)
torch.mm(torch.randn(256, 256), torch.randn(256, 256))  # torch's team exists
before = len(os.listdir("/proc/self/task"))
w = torch.nn.Parameter(torch.randn(2**20))
w.grad = torch.randn(2**20)
opt = ft.Adam([w], lr=1e-3)
for _ in range(3):
    opt.step()
print("threads", before, len(os.listdir("/proc/self/task")), fastopt.config()["thread_pool"]["workers"])
"""
    r = _run(code, timeout=120)
    assert r.returncode == 0, r.stderr
    before, after, workers = map(int, r.stdout.split("threads")[1].split())
    assert after == before and workers == 0
