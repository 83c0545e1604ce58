"""The weights shipped in weights/ load offline and actually restore a degraded photo (one not used in training)."""
import numpy as np
import pytest

import kd
from kd.metrics import psnr, ssim
from kd.models import count_params, gflops

def photos():
    """Photos bundled with scikit-image (never trained on): the five of the eval set."""
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.stereo_motorcycle()[0]]


@pytest.fixture(scope="module")
def gains():
    """Mean PSNR/SSIM change over the degraded input, per method, on scikit-image's photos at the medium preset."""
    out = {m: {"psnr": [], "ssim": []} for m in ("student", "teacher", "unsharp")}
    for clean in photos():
        degraded = kd.degrade(clean, "medium")
        for m in out:
            restored = kd.sharpen(degraded, model=m)
            out[m]["psnr"].append(psnr(restored, clean) - psnr(degraded, clean))
            out[m]["ssim"].append(ssim(restored, clean) - ssim(degraded, clean))
    return {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in out.items()}


@pytest.mark.parametrize("name", ["student", "teacher", "seed", "student_kd", "student_nokd"])
def test_shipped_weights_load_with_their_own_config(name):
    from kd.runtime import WEIGHTS_DIR

    net = kd.load(name if name in ("student", "teacher", "seed") else str(WEIGHTS_DIR / f"{name}.pt"))
    assert count_params(net) > 0


def test_student_within_real_time_budget():
    net = kd.load("student")
    assert count_params(net) <= 60_000 and gflops(net) <= 6.0


def test_shipped_models_improve_degraded_photos(gains):
    assert gains["student"]["psnr"] > 0
    assert gains["teacher"]["psnr"] > 0.2 and gains["teacher"]["ssim"] > 0.005


def test_teacher_beats_student_and_student_beats_unsharp(gains):
    assert gains["teacher"]["psnr"] > gains["student"]["psnr"] > gains["unsharp"]["psnr"]
