"""The weights shipped in weights/ load offline and actually restore degraded photos (never used in training),
without harming clean ones. The simulator tells the stream-aware teacher what it did, as a receiver knows its stream.
Crops keep the teacher (2.3 TFLOP per 720p frame) affordable on a 2-core CI machine."""
import numpy as np
import pandas as pd
import pytest

import kd
from kd.compare import METHOD_LABELS, simulate
from kd.models import count_params, gflops


def crops():
    """Centre crops of the photos bundled with scikit-image (the eval set's five)."""
    from skimage import data

    out = []
    for img in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.stereo_motorcycle()[0]):
        h, w = img.shape[:2]
        out.append(np.ascontiguousarray(img[(h - 192) // 2:(h + 192) // 2, (w - 256) // 2:(w + 256) // 2]))
    return out


@pytest.fixture(scope="module")
def gains():
    """Mean PSNR/SSIM change over the degraded input per method and preset; on `clean`, PSNR against the input."""
    labels = {m: METHOD_LABELS[m] for m in ("student", "teacher", "unsharp")}
    rows = []
    for preset in ("clean", "mild", "medium"):
        for clean in crops():
            table = simulate(clean, preset, tuple(labels), backend="torch")[1].set_index("method")
            base = table.loc[METHOD_LABELS["none"]]
            for m, label in labels.items():
                psnr, ssim = table.loc[label, "PSNR (dB)"], table.loc[label, "SSIM"]
                rows.append((preset, m, psnr if preset == "clean" else psnr - base["PSNR (dB)"], ssim - base["SSIM"]))
    df = pd.DataFrame(rows, columns=["preset", "method", "psnr", "ssim"]).groupby(["preset", "method"]).mean()
    return {key: (r.psnr, None if key[0] == "clean" else r.ssim) for key, r in df.iterrows()}


@pytest.mark.parametrize("name", ["student", "teacher", "seed"])
def test_shipped_weights_load_with_their_own_config(name):
    net = kd.load(name)
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    import torch

    with torch.no_grad():
        y = net(torch.from_numpy(x))
    assert y.shape == (1, 3, 32, 32) and torch.isfinite(y).all()


def test_shipped_student_is_folded_and_within_real_time_budget():
    """What runs, told any stream or none, is a plain net within the real-time budget (FiLM and experts folded)."""
    from kd.degrade import stream_condition

    assert kd.load("student").config.get("rep") is False  # the RepVGG branches were folded for shipping
    for stream in (None, "mild", "medium", "call", 2.0):
        net = kd.load("student", tuple(stream_condition(stream).tolist()))
        assert net.experts is None and net.film is None
        assert count_params(net) <= 60_000 and gflops(net) <= 6.0


def test_shipped_models_restore_medium_damage(gains):
    assert gains["medium", "student"][0] > 0.2
    assert gains["medium", "teacher"][0] > 0.4 and gains["medium", "teacher"][1] > 0.01


def test_teacher_beats_student_beats_unsharp(gains):
    assert gains["medium", "teacher"][0] > gains["medium", "student"][0] > gains["medium", "unsharp"][0]


def test_shipped_models_do_no_harm(gains):
    """On undegraded frames the output stays within 2 levels RMS of the input (≥ 42 dB); light damage is not made worse."""
    assert gains["clean", "student"][0] >= 42 and gains["clean", "teacher"][0] >= 42
    assert gains["mild", "student"][0] >= 0 and gains["mild", "teacher"][0] > 0


def test_shipped_teacher_restores_better_when_told_the_stream():
    """The shipped teacher is stream-aware: told what the link did, it gains more than when it has to guess."""
    from kd.degrade import degrade
    from kd.metrics import psnr

    assert kd.load("teacher").config["stream"] is True
    for preset in ("mild", "medium"):
        pairs = [(degrade(c, preset), c) for c in crops()]
        told = np.mean([psnr(kd.sharpen(d, model="teacher", backend="torch", stream=preset), c) for d, c in pairs])
        blind = np.mean([psnr(kd.sharpen(d, model="teacher", backend="torch", stream=None), c) for d, c in pairs])
        assert told > blind + 0.05, preset
