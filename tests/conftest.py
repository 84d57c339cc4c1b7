import numpy as np
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


def _write_idx(path, array: np.ndarray) -> None:
    """An IDX file (the MNIST format): zero, zero, type 0x08 = uint8, the rank,
    big-endian sizes, the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        bytes([0, 0, 0x08, array.ndim])
        + np.array(array.shape, dtype=">u4").tobytes()
        + array.tobytes()
    )


@pytest.fixture
def write_idx():
    """write_idx(path, uint8 array): a fake MNIST file, as torchvision reads it."""
    return _write_idx
