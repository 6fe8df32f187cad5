"""End to end: one MLP trained by fastopt's Trainer, torch and scikit-learn (fastopt.trainbench).

Each round is a fresh process per peer, so thread settings act as they do for a user; the
benchmark's time is the whole process, the fit's own seconds and held-out accuracy go to
``extra_info``.  ``fastopt bench --train`` prints the same comparison as a table.
"""
import importlib.util

import pytest

from fastopt import trainbench as T


@pytest.mark.parametrize("case", list(T.CASES))
@pytest.mark.parametrize("peer", T.PEERS)
def test_train(benchmark, case, peer, smoke):
    if peer != "fastopt" and importlib.util.find_spec(peer) is None:
        pytest.skip(f"{peer} is not installed")
    benchmark.group = f"train {case}"
    out = {}

    def run():
        out.update(T.run_subprocess(case, peer, smoke=smoke))

    benchmark.pedantic(run, rounds=1 if smoke else 3, iterations=1)
    benchmark.extra_info.update(out)
    assert out["seconds"] > 0 and 0.0 <= out["accuracy"] <= 1.0
    if not smoke:
        assert out["accuracy"] > (0.9 if case == "digits" else 0.7)  # each peer learns the task
