import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from kd.degrade import degrade
from kd.metrics import all_metrics, ms_ssim, psnr, ssim


def test_psnr_and_ssim_agree_with_scikit_image(photo):
    noisy = degrade(photo, "severe")
    mse = np.mean((noisy.astype(float) - photo) ** 2)
    assert psnr(noisy, photo) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-6)
    assert psnr(noisy, photo) == pytest.approx(peak_signal_noise_ratio(photo, noisy, data_range=255))
    ref = structural_similarity(noisy, photo, channel_axis=-1, data_range=255, gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=False)
    assert ssim(noisy, photo) == pytest.approx(ref)


def test_identical_images_score_perfectly(photo):
    m = all_metrics(photo, photo)
    assert m["psnr"] == float("inf") and m["ssim"] == pytest.approx(1) and m["ms_ssim"] == pytest.approx(1)


def test_ms_ssim_drops_with_damage(photo):
    assert ms_ssim(degrade(photo, "mild"), photo) > ms_ssim(degrade(photo, "severe"), photo)
    assert np.isnan(ms_ssim(photo[:50, :50], photo[:50, :50]))  # too small for 5 scales


def test_shape_mismatch_is_an_error(photo):
    with pytest.raises(ValueError, match="shape"):
        psnr(photo, photo[1:])
