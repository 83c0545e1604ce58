"""kd.imagefile, the one home of image files: each reader, the writer and the resampling rule on real photos."""
import cv2
import numpy as np
import pytest

from kd.clips import load_photo
from kd.imagefile import decode_image, list_images, read, read_image, resize, rgb, write


def test_resize_averages_when_shrinking_and_is_bicubic_when_growing(photo):
    assert np.array_equal(resize(photo, (200, 150)), cv2.resize(photo, (200, 150), interpolation=cv2.INTER_AREA))
    assert np.array_equal(resize(photo, (700, 601)), cv2.resize(photo, (700, 601), interpolation=cv2.INTER_CUBIC))
    assert np.array_equal(resize(photo, (512, 512)), photo)


def test_data_reader_gives_8_bit_rgb_of_any_file(tmp_path, odd_photo):
    deep = np.concatenate([odd_photo.astype(np.uint16) * 257, np.full(odd_photo.shape[:2] + (1,), 65535, np.uint16)], 2)
    write(tmp_path / "deep.png", deep)
    full, _ = read(tmp_path / "deep.png")
    assert full.dtype == np.uint16 and full.shape[2] == 4  # the user's reader keeps depth and alpha
    assert np.array_equal(read_image(tmp_path / "deep.png"), odd_photo)  # the data reader: 8-bit RGB
    write(tmp_path / "gray.png", odd_photo[:, :, 1])
    assert np.array_equal(read_image(tmp_path / "gray.png"), rgb(odd_photo[:, :, 1]))
    assert np.array_equal(decode_image((tmp_path / "gray.png").read_bytes()), rgb(odd_photo[:, :, 1]))
    (tmp_path / "notes.txt").write_text("not a photo")
    assert [p.name for p in list_images(tmp_path)] == ["deep.png", "gray.png"]
    with pytest.raises(ValueError, match="notes.txt: not a readable image"):
        read_image(tmp_path / "notes.txt")


def test_rgb_repeats_gray_and_drops_alpha(odd_photo):
    assert rgb(odd_photo[:, :, 0]).shape == odd_photo.shape and np.array_equal(rgb(odd_photo[:, :, 0])[:, :, 2], odd_photo[:, :, 0])
    rgba = np.concatenate([odd_photo, odd_photo[:, :, :1]], 2)
    assert np.array_equal(rgb(rgba), odd_photo)
    gray_alpha = np.stack([odd_photo[:, :, 0], odd_photo[:, :, 1]], 2)  # PIL's LA mode
    assert np.array_equal(rgb(gray_alpha), rgb(odd_photo[:, :, 0])) and np.array_equal(rgb(gray_alpha[:, :, :1]), rgb(gray_alpha))


def test_clip_photos_come_by_name_or_file(tmp_path, odd_photo):
    write(tmp_path / "p.png", odd_photo)
    assert np.array_equal(load_photo(str(tmp_path / "p.png")), odd_photo)
    assert load_photo("coffee").shape == (400, 600, 3)
    for bad in (tmp_path / "missing.png", tmp_path):
        with pytest.raises(ValueError, match="neither a scikit-image photo"):
            load_photo(str(bad))
