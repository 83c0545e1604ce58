"""Training pairs as a call delivers them: video played through a call's codec path, inter frames included.

    python -m kd.calldata pack --out data/call_shard.npz --max-mb 24       # training pairs + call validation sets
    python -m kd.calldata pack --runs 4 --max-mb 1 --out /tmp/tiny.npz     # a quick look

Why: the nets learned from stills coded alone (JPEG, H.264 intra at a fixed QP), but a call is inter-coded video
under rate control, with the sender stepping its picture size down as the bitrate drops. Measured in real calls the
gain fell to a few tenths of a dB and went negative at high bitrates. Here each run plays a clip (a real video, or a
slow pan and zoom over a photo) through ``kd.callcodec``'s sender and receiver at one bitrate of the call ladder
(log-uniform over 100–2500 kbit/s; the sender picks its picture size as a real one does, or is forced onto a random
step of the ladder), and keeps some decoded frames with the receiver's knowledge of each (``Received``: scale,
codec, the frame's own QP). Stored as crops at display size, 4:4:4 JPEG q97, so a GPU machine needs no PyAV.

Content: talking heads first (calls show faces: the training face photos are panned over twice as often), then
general photos and clips. Held out: ``HELD_OUT_CLIPS`` (evaluation, ``kd.call``) and the photos of ``data/val``
(validation sets here) and ``data/eval``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kd.callcodec import CALL_CODECS, SCALES, Decoder, Encoder, received, sender_scale, sent_size
from kd.data import FACE_PREFIX, _blobs, _stored_jpeg, _unblob
from kd.imagefile import decode_image, list_images, read_image
from kd.degrade import Received, display
from kd.clips import pan_clip, read_clip

TRAIN_CLIPS = ("single_face.mp4", "no_face.mp4", "vtest.avi")  # data/video (kd.data fetch)
HELD_OUT_CLIPS = ("WolfgangLanger_Pexels.mp4",)  # a real talking head: the calls of the README are measured on it
DISPLAY_SIZES = ((640, 360), (960, 540), (1280, 720))
KBPS_RANGE = (100.0, 2500.0)
HIGH_KBPS = 1000  # validation splits its pairs at this bitrate: a net must not harm good frames to help bad ones


@dataclass(frozen=True)
class CallPair:
    """A display-size crop of what the receiver showed, the same crop of the original, and what the receiver knew."""

    degraded: np.ndarray
    clean: np.ndarray
    stream: Received
    kbps: float


def play(frames: list[np.ndarray], fps: float, codec: str, kbps: float, scale: float | None = None):
    """Yield (index, decoded frame at display size, Received) for every frame of one call at a fixed bitrate.

    ``scale`` None: the sender picks its picture size from the bitrate as in ``kd.call``; else it sends at that step.
    """
    size = frames[0].shape[1::-1]
    scale = sender_scale(kbps, size, fps) if scale is None else scale
    small = sent_size(size, scale)
    enc, dec = Encoder(codec, small, kbps, fps), Decoder(codec)
    for i, frame in enumerate(frames):
        packet = enc.encode(frame, round(i * 90_000 / fps))
        for rgb, qp in dec.decode(packet) if packet is not None else ():
            yield i, display(rgb, frame.shape[:2]), received(codec, size[0] / small[0], qp)


def run_pairs(frames, fps, codec, kbps, rng: np.random.Generator, crop: int, keep_every: int = 6,
              scale: float | None = None) -> list[CallPair]:
    """Crops of every ``keep_every``-th decoded frame of one call (the first, a keyframe, now and then)."""
    pairs = []
    offset = int(rng.integers(1, keep_every + 1))
    for i, shown, stream in play(frames, fps, codec, kbps, scale):
        if not ((i - offset) % keep_every == 0 and i >= offset or (i == 0 and rng.random() < 0.3)):
            continue
        h, w = shown.shape[:2]
        if min(h, w) < crop:
            continue
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        pairs.append(CallPair(shown[y:y + crop, x:x + crop], frames[i][y:y + crop, x:x + crop], stream, kbps))
    return pairs


def random_run(rng: np.random.Generator, photos: list[tuple[str, np.ndarray]], clips: list[Path], frames: int = 36):
    """The frames and fps of one run's content: a clip excerpt (a third of the runs, when there are clips) or a pan
    over a photo, faces twice as likely."""
    if clips and rng.random() < 1 / 3:
        path = clips[rng.integers(len(clips))]
        size = DISPLAY_SIZES[rng.integers(2)]  # the clips are at most 960 wide: no upscaled "clean" frames
        clip, fps = read_clip(path, size, max_frames=frames, start=int(rng.integers(0, 40)))
        return clip, fps
    weights = np.array([2.0 if name.startswith(FACE_PREFIX) else 1.0 for name, _ in photos])
    _, photo = photos[rng.choice(len(photos), p=weights / weights.sum())]
    size = DISPLAY_SIZES[rng.integers(len(DISPLAY_SIZES))]
    speed = float(rng.uniform(0.3, 2.5)) * size[0] / 640
    return pan_clip(photo, size, frames, speed=speed, zoom=float(rng.uniform(0, 0.004))), 30.0


def random_call(rng: np.random.Generator) -> tuple[str, float, float | None]:
    """(codec, kbit/s, forced scale or None) of one run: log-uniform bitrate; half the runs on a random ladder step."""
    codec = CALL_CODECS[rng.integers(len(CALL_CODECS))]
    kbps = float(np.exp(rng.uniform(*np.log(KBPS_RANGE))))
    return codec, kbps, (float(rng.choice(SCALES)) if rng.random() < 0.5 else None)


def make_pairs(photos, clips, runs: int, rng: np.random.Generator, crop: int = 144, max_bytes: float = np.inf,
               size_of=lambda p: 0) -> list[CallPair]:
    """Pairs of up to ``runs`` random calls, stopping early once ``size_of`` the pairs reaches ``max_bytes``."""
    pairs, total = [], 0
    for _ in tqdm(range(runs), desc="calls", unit="run"):
        frames, fps = random_run(rng, photos, clips)
        codec, kbps, scale = random_call(rng)
        for p in run_pairs(frames, fps, codec, kbps, rng, crop, scale=scale):
            pairs.append(p)
            total += size_of(p)
        if total >= max_bytes:
            break
    return pairs


def validation_sets(photos, rng: np.random.Generator, crop: int = 128, per_set: int = 24) -> dict[str, list[CallPair]]:
    """Fixed call pairs from held-out photos, one set per codec and bitrate band ("call_h264_lo", ...)."""
    sets: dict[str, list[CallPair]] = {}
    while any(len(sets.get(f"call_{c}_{b}", [])) < per_set for c in CALL_CODECS for b in ("lo", "hi")):
        frames, fps = random_run(rng, photos, [], frames=24)
        for codec in CALL_CODECS:
            for band, kbps in (("lo", float(rng.uniform(100, 400))), ("hi", float(rng.uniform(HIGH_KBPS, 2500)))):
                got = sets.setdefault(f"call_{codec}_{band}", [])
                got += run_pairs(frames, fps, codec, kbps, rng, crop, keep_every=8)[: per_set - len(got)]
    return sets


CODEC_IDS = {c: i for i, c in enumerate(CALL_CODECS)}


def _params(pairs: list[CallPair]) -> np.ndarray:
    """(scale, codec id, QP or -1, kbit/s) per pair."""
    return np.array([(p.stream.scale, CODEC_IDS[p.stream.codec], -1 if p.stream.qp is None else p.stream.qp, p.kbps)
                     for p in pairs], np.float32)


def stream_of(params: np.ndarray) -> Received:
    scale, codec, qp = float(params[0]), CALL_CODECS[int(params[1])], float(params[2])
    return Received(scale=scale, codec=codec, qp=None if qp < 0 else qp)


def pack(train_src: Path, val_src: Path, video: Path, out: Path, max_mb: float, runs: int = 100_000,
         crop: int = 144, seed: int = 0) -> Path:
    """Write a call shard: training pairs (``call_*`` arrays) and the call validation sets (``valcall_*``)."""
    rng = np.random.default_rng(seed)
    photos = [(p.stem, read_image(p)) for p in tqdm(list_images(train_src), desc="reading", unit="img")]
    if not photos:
        raise SystemExit(f"no photos in {train_src}: run `python -m kd.data fetch` first")
    clips = [video / c for c in TRAIN_CLIPS if (video / c).exists()]
    stored = {}

    def size_of(p: CallPair) -> int:
        stored[id(p)] = (_stored_jpeg(p.degraded, 97), _stored_jpeg(p.clean, 97))
        return sum(len(b) for b in stored[id(p)])

    val_photos = [(p.stem, read_image(p)) for p in list_images(val_src)]
    val = validation_sets(val_photos, np.random.default_rng(seed + 10_000)) if val_photos else {}
    pairs = make_pairs(photos, clips, runs, rng, crop, max_mb * 2**20 * 0.9, size_of)
    dd, do = _blobs([stored[id(p)][0] for p in pairs])
    cd, co = _blobs([stored[id(p)][1] for p in pairs])
    arrays = {}
    for name, ps in val.items():
        arrays[f"valcall_{name}_degraded"] = np.stack([p.degraded for p in ps])
        arrays[f"valcall_{name}_clean"] = np.stack([p.clean for p in ps])
        arrays[f"valcall_{name}_params"] = _params(ps)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, call_degraded=dd, call_degraded_offsets=do, call_clean=cd, call_clean_offsets=co,
                        call_params=_params(pairs), **arrays)
    print(f"packed {len(pairs)} call pairs of {crop}² and validation sets {sorted(val)} into {out} "
          f"({out.stat().st_size / 2**20:.1f} MiB)")
    return out


def load(path: Path | str) -> tuple[list[tuple[np.ndarray, np.ndarray, Received]], dict]:
    """(training pairs as (degraded, clean, stream), validation sets name -> (degraded, clean, streams)) of a shard."""
    from kd.degrade import stream_condition

    path = Path(path)
    if not path.exists():
        raise SystemExit(f"no call shard at {path}: make one with `python -m kd.calldata pack`")
    z = np.load(path)
    degraded = _unblob(z["call_degraded"], z["call_degraded_offsets"])
    clean = _unblob(z["call_clean"], z["call_clean_offsets"])
    pairs = [(decode_image(d), decode_image(c), stream_of(p)) for d, c, p in
             tqdm(zip(degraded, clean, z["call_params"]), desc="decoding calls", total=len(clean), leave=False)]
    names = sorted({k[len("valcall_"):-len("_params")] for k in z.files if k.endswith("_params") and k.startswith("valcall_")})
    val = {n: (z[f"valcall_{n}_degraded"], z[f"valcall_{n}_clean"],
               np.stack([stream_condition(stream_of(p)) for p in z[f"valcall_{n}_params"]])) for n in names}
    return pairs, val


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.calldata", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="make call training pairs and validation sets into one .npz shard")
    p.add_argument("--src", type=Path, default=Path("data/train"), help="photos to pan over")
    p.add_argument("--val", type=Path, default=Path("data/val"), help="held-out photos for the validation sets")
    p.add_argument("--video", type=Path, default=Path("data/video"), help=f"where the clips {TRAIN_CLIPS} are")
    p.add_argument("--out", type=Path, default=Path("data/call_shard.npz"))
    p.add_argument("--max-mb", type=float, default=24, help="size budget (a GPU machine's upload limit)")
    p.add_argument("--runs", type=int, default=100_000, help="stop after this many calls even if under budget")
    p.add_argument("--crop", type=int, default=144, help="side of each stored crop (display pixels)")
    p.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.max_mb <= 0 or a.runs < 1 or a.crop < 32:
        ap.error("--max-mb must be > 0, --runs >= 1, --crop >= 32")
    pack(a.src, a.val, a.video, a.out, a.max_mb, a.runs, a.crop, a.seed)


if __name__ == "__main__":
    main()
