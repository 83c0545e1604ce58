import numpy as np
import pytest
from scipy.signal import convolve2d

from kd.degrade import degrade
from kd.metrics import PSNR_CAP, all_metrics, capped_psnr, ms_ssim, psnr, ssim


def wang_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out from Wang et al. 2004: 11×11 Gaussian window (σ 1.5), valid positions only, K = 0.01, 0.03,
    averaged over the channels. Independent of scikit-image, which kd.metrics uses."""
    g = np.exp(-(np.arange(11) - 5) ** 2 / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for ch in range(a.shape[2]):
        x, y = a[:, :, ch].astype(float), b[:, :, ch].astype(float)
        f = lambda z: convolve2d(z, w, mode="valid")  # noqa: E731
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        scores.append((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())
    return float(np.mean(scores))


def test_psnr_known_values(photo):
    one_level = np.clip(photo.astype(int) + 1, 0, 255).astype(np.uint8)
    mse = np.mean((one_level.astype(float) - photo) ** 2)  # 1, less where 255 clipped
    assert psnr(one_level, photo) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)
    flat = np.zeros((8, 8, 3), np.uint8)
    assert psnr(flat + 1, flat) == pytest.approx(48.1308036, abs=1e-6)  # 20·log10(255)
    assert psnr(flat + 255, flat) == pytest.approx(0.0, abs=1e-9)


def test_ssim_matches_the_published_formula(photo):
    for preset in ("mild", "severe"):
        noisy = degrade(photo, preset)
        assert ssim(noisy, photo) == pytest.approx(wang_ssim(noisy, photo), abs=1e-6)
    assert wang_ssim(degrade(photo, "severe"), photo) < wang_ssim(degrade(photo, "mild"), photo) < 1


def test_identical_images_score_perfectly(photo):
    m = all_metrics(photo, photo)
    assert m["psnr"] == float("inf") and m["ssim"] == pytest.approx(1) and m["ms_ssim"] == pytest.approx(1)


def test_ms_ssim_drops_with_damage(photo):
    assert ms_ssim(degrade(photo, "mild"), photo) > ms_ssim(degrade(photo, "severe"), photo)
    assert np.isnan(ms_ssim(photo[:50, :50], photo[:50, :50]))  # too small for 5 scales


def test_shape_mismatch_is_an_error(photo):
    with pytest.raises(ValueError, match="shape"):
        psnr(photo, photo[1:])


def test_capped_psnr_counts_an_exact_frame_as_the_cap(photo):
    noisy = np.clip(photo.astype(int) + 3, 0, 255).astype(np.uint8)
    assert psnr(photo, photo) == np.inf and capped_psnr(photo, photo) == PSNR_CAP == 99.0
    assert capped_psnr(noisy, photo) == psnr(noisy, photo) < PSNR_CAP
