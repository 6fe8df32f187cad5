"""pytest-benchmark suite: each group compares the peers on one case, in one run.

Run: ``pytest bench --benchmark-only`` (add ``--benchmark-group-by=group`` to read it by case,
``--fastopt-sizes=1K,4M,64M`` for other sizes).  With ``--benchmark-disable`` every benchmark
runs once, on small sizes: the smoke test CI runs.
"""
import pytest


def pytest_addoption(parser):
    parser.addoption("--fastopt-sizes", default=None,
                     help="sizes for the size sweep, e.g. 1K,64K,4M,64M (default: 1K,64K,1M,4M,64M; 1K,64K when disabled)")


def _sizes(config):
    from fastopt.cli import _sizes as parse
    opt = config.getoption("--fastopt-sizes")
    if opt:
        return parse(opt)
    if config.getoption("benchmark_disable", False):
        return parse("1K,64K")
    return parse("1K,64K,1M,4M,64M")


def pytest_generate_tests(metafunc):
    if "size" in metafunc.fixturenames:
        metafunc.parametrize("size", _sizes(metafunc.config), ids=lambda n: f"n{n}")


@pytest.fixture
def smoke(request):
    return request.config.getoption("benchmark_disable", False)


@pytest.fixture(autouse=True)
def _restore_threads():
    from fastopt import _core
    from fastopt.benchmarks import set_threads
    n = _core.get_num_threads()
    yield
    set_threads(n)
