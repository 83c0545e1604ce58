import numpy as np
import pytest

from kd.degrade import PRESETS, Degradation, degrade, preset, random_degradation, video_codecs_available, with_seed
from kd.metrics import psnr


def test_presets_are_the_documented_ones():
    assert preset("mild") == Degradation(1.5, "jpeg", 60)
    assert preset("medium") == Degradation(2.0, "jpeg", 30)
    assert preset("severe") == Degradation(3.0, "jpeg", 15)


@pytest.mark.parametrize("name", list(PRESETS))
def test_degrade_keeps_size_and_harms_more_when_harsher(odd_photo, name):
    out = degrade(odd_photo, name)
    assert out.shape == odd_photo.shape and out.dtype == np.uint8
    assert not np.array_equal(out, odd_photo)


def test_severity_ordering(photo):
    scores = [psnr(degrade(photo, n), photo) for n in ("mild", "medium", "severe")]
    assert scores[0] > scores[1] > scores[2]


def test_same_seed_same_pair(odd_photo):
    assert with_seed(7) == with_seed(7)
    assert np.array_equal(degrade(odd_photo, with_seed(7)), degrade(odd_photo, with_seed(7)))
    draws = {with_seed(s) for s in range(20)}
    assert len(draws) == 20  # seeds actually vary the degradation


def test_random_distribution_respects_ranges():
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = random_degradation(rng)
        assert 1.5 <= d.scale <= 4.0
        if d.codec == "jpeg":
            assert 10 <= d.quality <= 70
        else:
            assert d.codec in ("h264", "h265") and 27 <= d.quality <= 40


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_video_codec_roundtrip(odd_photo, codec):
    if codec not in video_codecs_available():
        pytest.skip(f"PyAV cannot encode {codec} here")
    out = degrade(odd_photo, Degradation(2.0, codec, 35))
    assert out.shape == odd_photo.shape
    assert 20 < psnr(out, odd_photo) < 40


def test_bad_inputs_raise_clear_errors(photo):
    with pytest.raises(ValueError, match="preset"):
        degrade(photo, "awful")
    with pytest.raises(ValueError, match="uint8 RGB"):
        degrade(photo.astype(np.float32), "medium")
    with pytest.raises(ValueError, match="scale"):
        Degradation(scale=0.5)
    with pytest.raises(ValueError, match="quality"):
        Degradation(codec="jpeg", quality=0)
