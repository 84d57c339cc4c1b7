import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread avoids the cost of syncing threads on a shared machine.
    A test module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
