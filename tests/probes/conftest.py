"""The probe tests need torch (the optional extra) and run single-threaded: their models are tiny,
and idle OpenMP workers only slow a busy machine down."""

import pytest

torch = pytest.importorskip("torch", reason="the runtime probes need the optional torch extra")


@pytest.fixture(autouse=True, scope="module")
def single_threaded_torch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
