import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

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
