"""A torch training loop's step: right after a parallel torch op (as after the backward, with
torch's OpenMP workers still spinning), torch fused against fastopt.torch on torch's OpenMP team
(the default) and on fastopt's own team."""
import numpy as np
import pytest

from fastopt import benchmarks as B

torch = pytest.importorskip("torch")
import fastopt.torch as ft  # noqa: E402

CASES = {"256K": [1 << 18], "1M": [1 << 20], "resnet50": B.resnet50_sizes()}
PEERS = {"torch-fused": None, "fastopt.torch": True, "fastopt.torch-own-team": False}


@pytest.mark.parametrize("peer", sorted(PEERS))
@pytest.mark.parametrize("rule", ["adam", "adamw", "sgd", "adagrad"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_step_after_a_torch_op(benchmark, smoke, monkeypatch, case, rule, peer):
    sizes = CASES[case]
    if smoke:
        sizes = [max(1, n // 1000) for n in sizes]
    pr = B.Problem.make(rule, np.float32, sizes)
    if PEERS[peer] is not None:
        monkeypatch.setattr(ft, "TORCH_TEAM", PEERS[peer] and ft.TORCH_TEAM)
    fn = B.make_peer(pr, "torch-fused" if peer == "torch-fused" else "fastopt.torch")
    x = torch.randn(64 if smoke else 512, 64 if smoke else 512)
    benchmark.group = f"step after a torch op: {rule} float32 {case} threads={torch.get_num_threads()}"
    benchmark.extra_info.update(bytes=pr.bytes, elements=pr.elements, peer=peer)

    def backward_like():  # a parallel torch op; returns None (pedantic would take a result as arguments)
        torch.mm(x, x)

    benchmark.pedantic(fn, setup=backward_like, rounds=1 if smoke else (31 if case == "resnet50" else 201))
    # the step ran: the parameters moved
    assert any(np.any(p != q) for p, q in zip(pr.params, B.Problem.make(rule, np.float32, sizes).params))
