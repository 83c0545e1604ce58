"""The weights shipped in weights/ load offline and actually restore a degraded photo (one not used in training)."""
import pytest

import kd
from kd.metrics import psnr, ssim
from kd.models import count_params, gflops


@pytest.fixture(scope="module")
def degraded(photo):
    return kd.degrade(photo, "medium")


@pytest.mark.parametrize("name", ["student", "teacher", "seed", "student_nokd"])
def test_shipped_weights_load_with_their_own_config(name):
    from kd.runtime import WEIGHTS_DIR

    net = kd.load(str(WEIGHTS_DIR / f"{name}.pt") if name == "student_nokd" else name)
    assert count_params(net) > 0


def test_student_within_real_time_budget():
    net = kd.load("student")
    assert count_params(net) <= 60_000 and gflops(net) <= 6.0


@pytest.mark.parametrize("model", ["student", "teacher"])
def test_shipped_models_improve_a_degraded_photo(photo, degraded, model):
    restored = kd.sharpen(degraded, model=model)
    assert psnr(restored, photo) > psnr(degraded, photo) + 0.1
    assert ssim(restored, photo) > ssim(degraded, photo)


def test_teacher_beats_student_and_student_beats_unsharp(photo, degraded):
    scores = {m: psnr(kd.sharpen(degraded, model=m), photo) for m in ("teacher", "student", "unsharp")}
    assert scores["teacher"] > scores["student"] > scores["unsharp"]
