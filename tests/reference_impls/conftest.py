"""Run the reference_impls tests single-threaded.

Their tensors are tiny, so intra-op threads buy nothing, and on a busy 2-core CI
runner the spinning OpenMP workers made each op 10-30x slower.
"""

import importlib.util

import pytest


@pytest.fixture(autouse=True, scope="module")
def single_threaded_torch():
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
