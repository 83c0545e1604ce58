"""A measured video call over loopback: two WebRTC peers (aiortc), a sender whose bandwidth drops, a sharpening receiver.

    python -m kd.call [--clip CLIP.mp4 | --pan astronaut] [--size 1280x720] [--schedule 1500:4,300:4,150:4]
                      [--codec h264] [--model student] [--backend auto] [--out results/call_720p]

The sender plays the clip in real time and encodes it with a real codec (libx264 or libvpx through PyAV) at the
bitrate of the current phase, sending a smaller picture when the bitrate is low, as WebRTC senders do. The packets
travel as real RTP/SRTP over a local ICE/DTLS connection to the receiver, which decodes them (aiortc), scales them
back to the display size and sharpens them with ``kd.sharpen`` in a worker thread. Like a real receiver it never
queues: when the sharpener is busy it takes the newest frame and skips the rest.

Frames are matched to the sent originals by RTP timestamp (the sender stamps frame i with i·90000/fps). We report per
bitrate phase: PSNR/SSIM of the plain received frame and of the sharpened one, the bitrate actually sent, received and
sharpened fps, frames lost, and the latency sharpening adds (decoded frame -> sharpened frame at display size,
including the upscale and any wait for the sharpener). Outputs: a Markdown table, a per-frame CSV, a plot and a
labelled side-by-side video.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from kd.callcodec import (CALL_CODECS, RTP_CLOCK, SCALES, Decoder, Encoder, check_codec, received, sender_scale,
                          sent_size, told_step)
from kd.degrade import display
from kd.runtime import BACKENDS
from kd.clips import fit, load_photo, pan_clip, parse_size, read_clip
from kd.registry import weights_note

MIN_KBPS, MAX_KBPS = 30, 50_000
# When the receiver runs the model: on every frame, or only when the sender had to shrink the picture (its bitrate
# was low), leaving full-size frames as they came.
WHEN = ("always", "scaled")
# What the receiver tells a stream-aware net: each frame's scale, codec and quantiser (smoothed over ~5 frames, as a
# browser's qpSum / framesDecoded over its stats interval), the scale alone, or nothing (blind).
TELL = ("qp", "scale", "nothing")


@dataclass(frozen=True)
class Phase:
    kbps: float
    seconds: float


def parse_schedule(text: str) -> list[Phase]:
    """'1500:4,300:4,150:4' -> phases of (kbit/s, seconds). Refuses bitrates no video call could run at."""
    phases = []
    for part in text.split(","):
        try:
            kbps, secs = (float(v) for v in part.split(":"))
        except ValueError:
            raise ValueError(f"schedule entries look like KBPS:SECONDS (e.g. 1500:4), got {part!r}") from None
        if not MIN_KBPS <= kbps <= MAX_KBPS:
            raise ValueError(f"bitrate {kbps:g} kbit/s is impossible for a video call: use {MIN_KBPS}-{MAX_KBPS}")
        if not 0 < secs <= 600:
            raise ValueError(f"phase length must be in (0, 600] seconds, got {secs:g}")
        phases.append(Phase(kbps, secs))
    if not phases:
        raise ValueError("empty schedule")
    return phases


def clip_track(frames: list[np.ndarray], fps: float, schedule: list[Phase], codec: str, log: dict):
    """An aiortc track that plays ``frames`` in real time and returns encoded packets (aiortc only packetises them)."""
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    size = frames[0].shape[1::-1]
    bounds = np.cumsum([p.seconds for p in schedule])

    class ClipTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.i, self.t0, self.encoder, self.phase = 0, None, None, -1
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="encoder")

        def _encode(self, i: int):
            phase = min(int(np.searchsorted(bounds, i / fps, side="right")), len(schedule) - 1)
            if phase != self.phase:  # a new bitrate: a new encoder, maybe a smaller picture, starts on a keyframe
                kbps = schedule[phase].kbps
                self.encoder = Encoder(codec, sent_size(size, sender_scale(kbps, size, fps)), kbps, fps)
                self.reader = Decoder(codec)
                self.phase = phase
            packet = self.encoder.encode(frames[i], round(i * RTP_CLOCK / fps))
            # the quantiser the receiver's decoder reads from this frame's bitstream (read here, from the same bytes)
            log["qp"][i] = self.reader.quantiser(packet) if packet is not None else None
            log["phase"][i], log["bytes"][i], log["sent_size"][i] = phase, packet.size if packet else 0, self.encoder.size
            return packet

        async def recv(self):
            while True:
                i = self.i
                if i >= len(frames):
                    log["done"].set()
                    self.stop()
                    raise MediaStreamError
                self.i += 1
                self.t0 = self.t0 or time.perf_counter()
                await asyncio.sleep(max(0.0, self.t0 + i / fps - time.perf_counter()))
                log["sent_at"][i] = time.perf_counter()
                packet = await asyncio.get_running_loop().run_in_executor(self.pool, self._encode, i)
                if packet is not None:
                    return packet

    return ClipTrack()


class Sharpener(threading.Thread):
    """Scales decoded frames to the display size and sharpens them, always taking the newest frame (never queueing).

    A stream-aware net is told what the receiver knows (``tell``): each frame's scale, codec and quantiser by default.
    The quantiser is smoothed and told in steps (``kd.callcodec.QP_STEP``); a stream not seen yet is folded and compiled in the
    background while frames use the nearest one that is ready, so a change of quantiser never stalls the picture.
    """

    def __init__(self, size: tuple[int, int], model: str, backend: str, realtime: bool = True, when: str = "always",
                 codec: str = "h264", tell: str = "qp"):
        super().__init__(daemon=True, name="sharpener")
        if when not in WHEN:
            raise ValueError(f"when must be one of {WHEN}, got {when!r}")
        if tell not in TELL:
            raise ValueError(f"tell must be one of {TELL}, got {tell!r}")
        self.size, self.model, self.backend, self.realtime, self.when = size, model, backend, realtime, when
        self.codec, self.tell = check_codec(codec), tell
        self.pending: deque = deque()
        self.cond = threading.Condition()
        self.stopping = False
        self.qp_avg: float | None = None
        self.ready: set = set()  # streams whose net is built
        self.building: set = set()
        self.builder = ThreadPoolExecutor(1, thread_name_prefix="fold")
        # frame -> (seconds from decode to sharpened, sharpened frame, seconds in upscale + model alone)
        self.results: dict[int, tuple[float, np.ndarray, float]] = {}
        self.told: dict[int, object] = {}  # frame -> the stream its net was told

    def offer(self, index: int, decoded_at: float, small: np.ndarray, qp: float | None = None) -> None:
        with self.cond:
            if self.realtime:
                self.pending.clear()
            self.pending.append((index, decoded_at, small, qp))
            self.cond.notify()

    def finish(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        self.join()
        self.builder.shutdown(wait=True)

    def prepare(self) -> None:
        """Build the net of every size the sender may send (``SCALES``), before the call starts, told the scale alone
        (a stream without its quantiser yet); the quantised streams are built as they appear.

        Why: a stream-aware net is folded, exported and compiled once per stream it is told (~4 s for OpenVINO here);
        done on the first frame of a new stream, that stalled the call (p95 3.8 s when the sender stepped down).
        """
        for s in SCALES:
            w, h = sent_size(self.size, s)
            self._build(self.fallback(self.size[0] / w), (h, w))

    def fallback(self, scale: float):
        return received(self.codec, scale, None) if self.tell == "qp" else scale if self.tell == "scale" else None

    def _build(self, stream, shape: tuple[int, int]) -> None:
        from kd.sharpen import sharpen

        sharpen(np.zeros((*shape, 3), np.uint8), model=self.model, backend=self.backend, stream=stream)
        self.ready.add(stream)
        self.building.discard(stream)

    def stream_for(self, small: np.ndarray, qp: float | None):
        """What the net is told of this frame: the wanted stream if its net is ready, else the nearest ready one."""
        scale = self.size[0] / small.shape[1]
        want = self.fallback(scale)
        if self.tell != "qp" or qp is None:
            return want
        self.qp_avg = qp if self.qp_avg is None else 0.8 * self.qp_avg + 0.2 * qp
        want = received(self.codec, scale, told_step(self.codec, self.qp_avg))
        if want in self.ready:
            return want
        if want not in self.building:
            self.building.add(want)
            self.builder.submit(self._build, want, small.shape[:2])
        same_size = [r for r in self.ready if isinstance(r, type(want)) and r.scale == want.scale and r.qp is not None]
        return min(same_size, key=lambda r: abs(r.qp - want.qp)) if same_size else self.fallback(scale)

    def process(self, small: np.ndarray, qp: float | None = None, index: int | None = None) -> np.ndarray:
        from kd.sharpen import sharpen

        scaled = small.shape[1::-1] != self.size
        up = display(small, self.size[::-1])  # the receiver's upscale, as kd.degrade models it
        if self.model == "none" or (self.when == "scaled" and not scaled):
            return up
        stream = self.stream_for(small, qp)
        if index is not None:
            self.told[index] = stream
        return sharpen(up, model=self.model, backend=self.backend, stream=stream)

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.pending and not self.stopping:
                    self.cond.wait()
                if not self.pending:
                    return
                index, decoded_at, small, qp = self.pending.popleft()
            t = time.perf_counter()
            out = self.process(small, qp, index)
            done = time.perf_counter()
            self.results[index] = (done - decoded_at, out, done - t)


@dataclass
class CallLog:
    """Everything one loopback call recorded, per frame index."""

    fps: float
    size: tuple[int, int]
    schedule: list[Phase]
    codec: str
    model: str
    phase: dict = field(default_factory=dict)
    bytes: dict = field(default_factory=dict)
    sent_size: dict = field(default_factory=dict)
    qp: dict = field(default_factory=dict)  # frame -> its quantiser, as the receiver's decoder reads it (or None)
    sent_at: dict = field(default_factory=dict)
    received: dict = field(default_factory=dict)  # frame -> (transport seconds, decoded RGB at the sent size)
    sharpened: dict = field(default_factory=dict)  # frame -> (added s, sharpened RGB at display size, model s)
    told: dict = field(default_factory=dict)  # frame -> the stream the net was told
    rtp_origin_ok: bool = True


async def _call(frames, fps, schedule, codec, sharpener: Sharpener, timeout: float) -> CallLog:
    from aiortc import RTCPeerConnection, RTCRtpSender
    from aiortc.mediastreams import MediaStreamError

    size = frames[0].shape[1::-1]
    log = CallLog(fps, size, schedule, codec, sharpener.model)
    raw = {"phase": log.phase, "bytes": log.bytes, "sent_size": log.sent_size, "sent_at": log.sent_at, "qp": log.qp,
           "done": asyncio.Event()}
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    try:
        transceiver = sender.addTransceiver(clip_track(frames, fps, schedule, codec, raw), direction="sendonly")
        mime = "video/H264" if codec == "h264" else "video/VP8"
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                         if c.mimeType in (mime, "video/rtx")])
        arrived = asyncio.get_running_loop().create_future()
        receiver.on("track", lambda t: arrived.done() or arrived.set_result(t))
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        track = await asyncio.wait_for(arrived, 20)
        step = RTP_CLOCK / fps
        with tqdm(total=len(frames), desc=f"call {size[0]}×{size[1]} {codec}", unit="frame") as bar:
            while True:
                try:
                    frame = await asyncio.wait_for(track.recv(), 1.0 if raw["done"].is_set() else timeout)
                except (asyncio.TimeoutError, MediaStreamError):
                    if raw["done"].is_set() or not log.received:
                        break
                    continue
                now = time.perf_counter()
                index = int(round(frame.pts / step))
                if not log.received and index != 0:
                    log.rtp_origin_ok = False  # the first frame was lost: RTP timestamps are then relative to another
                if index in log.received or index >= len(frames):
                    continue
                small = frame.to_ndarray(format="rgb24")
                log.received[index] = (now - log.sent_at.get(index, now), small)
                sharpener.offer(index, now, small, log.qp.get(index))
                bar.update(1)
                if index == len(frames) - 1:
                    break
    finally:
        await sender.close()
        await receiver.close()
    return log


def run_call(frames: list[np.ndarray], fps: float = 30.0, schedule: list[Phase] | None = None, codec: str = "h264",
             model: str = "student", backend: str = "auto", realtime: bool = True, timeout: float = 20.0,
             when: str = "always", tell: str = "qp") -> CallLog:
    """Play ``frames`` (display-size RGB) through a loopback WebRTC call and sharpen what arrives. Returns the log."""
    if not frames:
        raise ValueError("no frames to send")
    check_codec(codec)
    if not 1 <= fps <= 120:
        raise ValueError(f"fps must be in 1-120, got {fps:g}")
    schedule = schedule or [Phase(1500, len(frames) / fps)]
    size = frames[0].shape[1::-1]
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"display size must be even, got {size[0]}x{size[1]}")
    sharpener = Sharpener(size, model, backend, realtime, when, codec, tell)
    sharpener.prepare()  # the net for every stream the sender may send, ready before the call starts
    sharpener.start()
    try:
        log = asyncio.run(_call(frames, fps, schedule, codec, sharpener, timeout))
    finally:
        sharpener.finish()
    log.sharpened, log.told = sharpener.results, sharpener.told
    return log


def per_frame(log: CallLog, frames: list[np.ndarray], ssim_every: int = 1) -> "pd.DataFrame":  # noqa: F821
    """One row per sent frame: phase, bytes, QP, whether it arrived / was sharpened, PSNR/SSIM of both, latencies, and
    where the frame before it was shown too, the flicker of both (``kd.temporal``: how the error changes between
    frames once the clean clip's motion is followed)."""
    import pandas as pd

    from kd.metrics import capped_psnr, ssim
    from kd.temporal import motion, warp_error

    rows, last = [], None  # (index, received, sharpened) of the last frame shown
    for i in tqdm(range(len(frames)), desc="metrics", unit="frame", leave=False):
        row = {"frame": i, "phase": log.phase.get(i), "bytes": log.bytes.get(i, 0),
               "sent_w": (log.sent_size.get(i) or (None, None))[0], "qp": log.qp.get(i), "received": i in log.received,
               "sharpened": i in log.sharpened}
        if i in log.received:
            transport, small = log.received[i]
            plain = display(small, log.size[::-1])
            row.update(transport_ms=transport * 1000, psnr_received=capped_psnr(plain, frames[i]))
            if i % ssim_every == 0:
                row["ssim_received"] = ssim(plain, frames[i])
        if i in log.sharpened:
            added, out, work = log.sharpened[i]
            row.update(added_ms=added * 1000, model_ms=work * 1000, psnr_sharpened=capped_psnr(out, frames[i]))
            if i % ssim_every == 0:
                row["ssim_sharpened"] = ssim(out, frames[i])
            if last is not None and last[0] == i - 1 and i % ssim_every == 0:
                flows = motion(frames[i - 1: i + 1])
                for k, name in enumerate(("flicker_received", "flicker_sharpened"), start=1):
                    row[name] = warp_error([last[k], (plain, out)[k - 1]], flows, reference=frames[i - 1: i + 1])
            last = (i, plain, out)
        rows.append(row)
    return pd.DataFrame(rows)


def summary(df, log: CallLog) -> "pd.DataFrame":  # noqa: F821
    """Per bitrate phase (and overall): bitrate sent, fps, losses, quality gain and added latency."""
    import pandas as pd

    rows = []
    groups = [(f"{log.schedule[p].kbps:g}", df[df.phase == p], log.schedule[p].seconds) for p in range(len(log.schedule))]
    groups.append(("all", df, sum(p.seconds for p in log.schedule)))
    for name, g, secs in groups:
        secs = len(g) / log.fps or secs
        both = g[g.sharpened]
        sizes = sorted({int(w) for w in g.sent_w.dropna()})
        rows.append({
            "kbit/s": name,
            "sent width": "/".join(str(w) for w in sizes),
            "kbit/s sent": g.bytes.sum() * 8 / 1000 / secs if secs else math.nan,
            "QP median": g.qp.median(),
            "frames": len(g), "lost": int((~g.received).sum()),
            "received fps": g.received.sum() / secs if secs else math.nan,
            "sharpened fps": g.sharpened.sum() / secs if secs else math.nan,
            "PSNR received": both.psnr_received.mean(), "PSNR sharpened": both.psnr_sharpened.mean(),
            "ΔPSNR": (both.psnr_sharpened - both.psnr_received).mean(),
            "SSIM received": both.get("ssim_received", pd.Series(dtype=float)).mean(),
            "ΔSSIM": (both.get("ssim_sharpened", pd.Series(dtype=float))
                      - both.get("ssim_received", pd.Series(dtype=float))).mean(),
            "flicker ×input": (both.get("flicker_sharpened", pd.Series(dtype=float)).mean()
                               / both.get("flicker_received", pd.Series(dtype=float)).mean()),
            "added ms median": both.added_ms.median(), "added ms p95": both.added_ms.quantile(0.95),
            "model ms median": both.model_ms.median(),
            "transport ms median": g.transport_ms.median() if "transport_ms" in g else math.nan,
        })
    return pd.DataFrame(rows)


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    scale = max(0.4, img.shape[0] / 720)
    cv2.putText(out, text, (10, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), int(4 * scale), cv2.LINE_AA)
    cv2.putText(out, text, (10, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(1.5 * scale)),
                cv2.LINE_AA)
    return out


def write_video(log: CallLog, path: Path) -> int:
    """Received | sharpened, side by side and labelled, for every frame that was sharpened. Returns frames written."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(log.fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = 2 * log.size[0], log.size[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i in tqdm(sorted(log.sharpened), desc="video", unit="frame", leave=False):
            small = log.received[i][1]
            plain = display(small, log.size[::-1])
            kbps = log.schedule[log.phase[i]].kbps
            w, h = small.shape[1::-1]
            side = np.concatenate([label(plain, f"received {w}x{h} @ {kbps:g} kbit/s"),
                                   label(log.sharpened[i][1], f"sharpened ({log.model})")], axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(side, format="rgb24")):
                out.mux(packet)
            n += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return n


def plot(df, log: CallLog, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = df.frame / log.fps
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    ax.plot(t, df.psnr_received, ".", ms=3, label="received")
    ax.plot(t, df.psnr_sharpened, ".", ms=3, label=f"sharpened ({log.model})")
    ax2.plot(t, df.added_ms, ".", ms=3, color="C2", label="added by sharpening")
    start = 0.0
    for p in log.schedule:
        for a in (ax, ax2):
            a.axvline(start, color="gray", lw=0.5)
        ax.text(start + 0.1, np.nanmax(df.psnr_received), f"{p.kbps:g} kbit/s", va="top", fontsize=8)
        start += p.seconds
    ax.set_ylabel("PSNR vs sent frame (dB)")
    ax2.set_ylabel("latency (ms)")
    ax2.set_xlabel("time (s)")
    ax.legend(loc="lower left")
    ax2.legend(loc="upper left")
    ax.set_title(f"Loopback call {log.size[0]}×{log.size[1]}, {log.codec}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_frames(clip: str | None, pan: str | None, size: tuple[int, int], seconds: float, fps: float | None):
    """Display-size frames for the call: a video file (looped if short) or a slow pan over a photo."""
    n = None if fps is None else max(1, round(seconds * fps))
    if clip:
        frames, clip_fps = read_clip(clip, size)
        fps = fps or clip_fps
        n = max(1, round(seconds * fps))
        frames = [frames[i % len(frames)] if (i // len(frames)) % 2 == 0 else frames[-1 - i % len(frames)]
                  for i in range(n)]  # ping-pong loop: no jump
        return frames, fps
    fps = fps or 30.0
    n = n or max(1, round(seconds * fps))
    photo = load_photo(pan or "astronaut")
    return [fit(f, size) for f in pan_clip(photo, size, n, speed=0.5, zoom=0.0005)], fps


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.call", description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--clip", help="video file to send (looped to the schedule's length)")
    src.add_argument("--pan", default=None, help="or pan over a photo: scikit-image name or image file (default)")
    ap.add_argument("--size", default="1280x720", help="display size WxH (the sender's full size)")
    ap.add_argument("--schedule", default="1500:4,300:4,150:4", help="bitrate phases KBPS:SECONDS,...")
    ap.add_argument("--fps", type=float, default=None, help="send rate (default: the clip's, or 30)")
    ap.add_argument("--codec", default="h264", choices=CALL_CODECS)
    ap.add_argument("--tell", default="qp", choices=TELL,
                    help="what the receiver tells the net: scale, codec and each frame's quantiser; the scale; nothing")
    ap.add_argument("--model", default="student", help="kd.sharpen model, or 'none' to only upscale")
    ap.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    ap.add_argument("--every-frame", action="store_true", help="sharpen every frame (queue) instead of the newest")
    ap.add_argument("--when", default="always", choices=WHEN,
                    help="run the model on every frame, or only on frames the sender shrank (low bitrate)")
    ap.add_argument("--ssim-every", type=int, default=1, help="SSIM on every Nth frame (it is slow at 720p)")
    ap.add_argument("--out", type=Path, default=Path("results/call"), help="prefix for .md, .csv and .png")
    ap.add_argument("--video", type=Path, default=None, help="side-by-side video (default: runs/<out name>.mp4; '' none)")
    a = ap.parse_args(argv)
    try:
        size = parse_size(a.size)
        if size[0] % 2 or size[1] % 2:
            raise ValueError(f"size must be even, got {a.size}")
        schedule = parse_schedule(a.schedule)
        frames, fps = load_frames(a.clip, a.pan, size, sum(p.seconds for p in schedule), a.fps)
        log = run_call(frames, fps, schedule, a.codec, a.model, a.backend, realtime=not a.every_frame, when=a.when,
                       tell=a.tell)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
    if not log.received:
        raise SystemExit("error: no frame arrived (the peers did not connect)")
    df = per_frame(log, frames, a.ssim_every)
    table = summary(df, log)
    source = a.clip or f"pan over {a.pan or 'astronaut'}"
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end"
    text = (f"Loopback WebRTC call: {source}, {size[0]}×{size[1]} at {fps:g} fps, {a.codec}, model {a.model} "
            f"({a.backend}, {'on every frame' if a.when == 'always' else 'only on frames the sender shrank'}, told "
            f"{ {'qp': 'scale, codec and QP', 'scale': 'the scale', 'nothing': 'nothing'}[a.tell]}), "
            f"{'every frame' if a.every_frame else 'real time (newest frame)'}; {load}.\n"
            f"Frames matched by RTP timestamp{'' if log.rtp_origin_ok else ' (WARNING: first frame lost)'}; "
            f"PSNR/SSIM against the sent original over the frames that were sharpened; latency added = decoded → "
            f"sharpened at display size. Weights: {weights_note([a.model]) or a.model}.\n\n"
            f"{table.to_markdown(index=False, floatfmt='.2f')}\n")
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(f"# {text}")
    df.to_csv(a.out.with_suffix(".csv"), index=False)
    plot(df, log, a.out.with_suffix(".png"))
    video = a.video if a.video is not None else Path("runs") / f"{a.out.name}.mp4"
    if str(video) not in ("", "."):
        print(f"wrote {write_video(log, video)} frames to {video}")
    print(f"wrote {a.out.with_suffix('.md')}, .csv, .png")


if __name__ == "__main__":
    main()
