import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import fastopt  # noqa: E402
from fastopt import _core  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--fuzz-examples", type=int, default=300, help="examples for test_fuzz.py (default 300)")


@pytest.fixture
def restore_isa():
    isa = _core.isa()
    yield
    _core._set_isa(isa)


@pytest.fixture
def restore_threads():
    n = fastopt.get_num_threads()
    yield
    fastopt.set_num_threads(n)
