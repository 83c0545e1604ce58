import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest
from skimage import data


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph bundled with scikit-image (512×512 RGB)."""
    return data.astronaut()


@pytest.fixture(scope="session")
def odd_photo(photo) -> np.ndarray:
    return np.ascontiguousarray(photo[13:210, 7:158])  # 197×151: no size is a multiple of anything


@pytest.fixture(scope="session")
def net_path(tmp_path_factory) -> str:
    """A student with random (non-identity) weights, so plumbing tests do not depend on the shipped weights."""
    import torch

    from kd import checkpoint
    from kd.models import build

    torch.manual_seed(0)
    net = build("student")
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    path = tmp_path_factory.mktemp("weights") / "student.pt"
    checkpoint.save(path, net)
    return str(path)


@pytest.fixture(scope="session")
def aware_net_path(tmp_path_factory) -> str:
    """A small stream-aware teacher with random FiLM and tail weights: each stream gives a visibly different output."""
    import torch

    from kd import checkpoint
    from kd.models import build

    torch.manual_seed(1)
    net = build({"arch": "teacher", "blocks": 1, "width": 8, "unshuffle": 2, "stream": True})
    for p in (*net.film.parameters(), net.tail.weight):
        torch.nn.init.normal_(p, std=0.1)
    path = tmp_path_factory.mktemp("weights") / "aware.pt"
    checkpoint.save(path, net)
    return str(path)
