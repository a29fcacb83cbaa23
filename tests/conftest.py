import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """The test models are tiny: one thread runs them faster than two, and is immune to the slowdown that
    several threads' barriers suffer when the cores are shared with other jobs (measured at 15-30x).
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
