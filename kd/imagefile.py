"""Reading, writing and resizing images: the one home of image files in sharpkd.

Two readers for two jobs. ``read`` takes a user's file (the app's uploads, ``python -m kd.sharpen``) at full depth:
16-bit PNG/TIFF stay 16-bit, alpha is kept, and a decompression bomb is refused from its header instead of filling
memory. ``read_image`` takes a photo of our own data (training, evaluation, stimuli) as 8-bit RGB, the form every net
and metric works on. ``write`` writes either; ``resize`` and ``fit_to_limit`` change sizes.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
PHOTO_EXTENSIONS = tuple(e for e in EXTENSIONS if e != ".gif")  # what ``list_images`` picks up (OpenCV reads no GIF)
FULL_DEPTH = (".png", ".tif", ".tiff")  # formats that can hold 16 bits per channel: OpenCV decodes those unchanged


def as_array(image) -> tuple[np.ndarray, str | None]:
    """(array, PIL mode or None). Raises ValueError for anything that is not an image."""
    if isinstance(image, Image.Image):
        mode = image.mode
        if mode in ("P", "CMYK", "YCbCr", "LAB", "HSV", "1"):
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.clip(np.asarray(image), 0, 65535).astype(np.uint16), mode
        return np.asarray(image), mode
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an image (numpy array or PIL.Image), got {type(image).__name__}")
    return image, None


def to_float_rgb(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """HxWx3 float32 in [0, 1] and the alpha channel (or None): what the nets and the stream estimator read.
    Raises ValueError for a shape, pixel type or value that is not an image."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        f = arr.astype(np.float32) / 255
    elif arr.dtype == np.uint16:
        f = arr.astype(np.float32) / 65535
    elif arr.dtype in (np.float32, np.float64):
        if not np.isfinite(arr).all():
            raise ValueError("image contains NaN or infinite values")
        f = np.clip(arr.astype(np.float32), 0, 1)
    else:
        raise ValueError(f"unsupported pixel type {arr.dtype}: use uint8, uint16 or float in [0, 1]")
    alpha = f[:, :, 3:] if f.shape[2] == 4 else None
    rgb = np.repeat(f, 3, axis=2) if f.shape[2] == 1 else f[:, :, :3]
    return np.ascontiguousarray(rgb), alpha


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample to size=(w, h): area averaging when the pixel count shrinks (no aliasing), bicubic when it grows."""
    h, w = img.shape[:2]
    shrink = size[0] * size[1] < w * h
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def fit_to_limit(img: np.ndarray, max_pixels: int) -> tuple[np.ndarray, str]:
    """Area-downscale an image above ``max_pixels``; return it and a notice ('' when untouched)."""
    h, w = img.shape[:2]
    if h * w <= max_pixels:
        return img, ""
    f = (max_pixels / (h * w)) ** 0.5
    nw, nh = max(1, int(w * f)), max(1, int(h * f))
    return resize(img, (nw, nh)), (
        f"The image ({w}×{h}) is larger than the limit of {max_pixels / 1e6:g} MPix and was downscaled to {nw}×{nh}.")


def read(path: Path | str, max_pixels: int | None = None, decode_limit: int = 100_000_000) -> tuple[np.ndarray, str]:
    """(HxW[xC] uint8/uint16 RGB(A) array, notice). Raises ValueError for a non-image or one over ``decode_limit``.

    The header is read first: images above ``decode_limit`` pixels are refused undecoded, and a JPEG above
    ``max_pixels`` is decoded at a reduced scale (libjpeg's draft mode). The result is downscaled to ``max_pixels``.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"{path.name}: the image is too large to open safely") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path.name}: not a readable image ({e})") from None
    with im:
        w, h = im.size
        if w * h > decode_limit:
            raise ValueError(f"{path.name}: {w}×{h} is too large (limit {decode_limit / 1e6:g} MPix)")
        try:
            if path.suffix.lower() in FULL_DEPTH and im.format in ("PNG", "TIFF"):
                arr = _decode_unchanged(path)
            else:
                if max_pixels and im.format == "JPEG" and w * h > max_pixels:
                    f = (max_pixels / (w * h)) ** 0.5
                    im.draft("RGB", (int(w * f) + 1, int(h * f) + 1))  # at least the target size, never less
                arr, _ = as_array(ImageOps.exif_transpose(im))
        except (OSError, SyntaxError, ValueError, cv2.error) as e:
            raise ValueError(f"{path.name}: not a readable image ({e})") from None
    return fit_to_limit(np.ascontiguousarray(arr), max_pixels) if max_pixels else (arr, "")


def jpeg_quantization(path: Path | str) -> dict | None:
    """A JPEG file's quantisation tables (Pillow's ``img.quantization``, read from the header: nothing is decoded),
    None for any other file or one that cannot be read. ``kd.estimate`` reads its quality from them."""
    try:
        with Image.open(path) as im:
            return dict(im.quantization) if im.format == "JPEG" and getattr(im, "quantization", None) else None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _decode_unchanged(path: Path) -> np.ndarray:
    """OpenCV keeps 16 bits and alpha (Pillow turns 16-bit RGB into 8-bit); BGR(A) becomes RGB(A)."""
    img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("OpenCV could not decode it")
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"unsupported pixel type {img.dtype}")
    return img


def read_image(path: Path | str) -> np.ndarray:
    """A photo file of our data as HxWx3 uint8 RGB (gray is repeated, alpha dropped, 16 bits cut to 8)."""
    path = Path(path)
    return decode_image(path.read_bytes(), str(path))


def decode_image(buf: bytes | np.ndarray, name: str = "image") -> np.ndarray:
    """Encoded bytes (JPEG, PNG, ...) -> HxWx3 uint8 RGB; ValueError naming ``name`` if they are not an image."""
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{name}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def list_images(folder: Path | str) -> list[Path]:
    """The photo files in a folder, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS)


def rgb(img: np.ndarray) -> np.ndarray:
    """HxWx3 from a gray (HxW, HxWx1), gray+alpha or RGB(A) image: gray repeated, alpha dropped."""
    if img.ndim == 2:
        img = img[:, :, None]
    return img[:, :, :3] if img.shape[2] >= 3 else np.repeat(img[:, :, :1], 3, 2)


def skimage_photo(name: str) -> np.ndarray:
    """A photo bundled with scikit-image by its name in ``skimage.data`` (astronaut, coffee, camera...): no download."""
    from skimage import data

    return getattr(data, name)()


def write(path: Path | str, arr: np.ndarray) -> Path:
    """Write a uint8/uint16 gray, RGB or RGBA array losslessly where the format allows (PNG: 16-bit stays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.dtype.kind == "f":
        arr = (np.clip(arr, 0, 1) * 65535 + 0.5).astype(np.uint16)
    if path.suffix.lower() in (".jpg", ".jpeg", ".webp", ".bmp") and arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)  # these hold 8 bits only
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(path.suffix or ".png", arr)
    if not ok:
        raise OSError(f"could not encode {path}")
    buf.tofile(path)
    return path
