"""Live sharpening over WebRTC: the browser sends its camera, the server sends back the degraded or sharpened picture.

Gradio's stream events re-send whole frames over HTTP (1-2 fps here); a call runs over WebRTC. This module is an
aiortc endpoint mounted on the Gradio app's own server (``app.launch(app_kwargs=live.app_kwargs())``):

- ``POST /live/offer``: the browser's SDP offer -> our answer. One peer connection per viewer.
- ``GET /live/``: the page (``kd/live_static``) that Gradio's "Live (WebRTC)" tab shows in a frame.

Each camera frame is scaled to a call's working size (640×360 by default), degraded with a bandwidth preset to show
the damage, sharpened by the student, and sent back as degraded, sharpened or split (left degraded, right
sharpened). Like a call receiver, the server takes the newest camera frame and skips those that came while it was
busy, so the picture never lags behind. Settings go in and stats (fps, ms per model call) come out over a data
channel.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from kd.degrade import PRESETS, degrade

STATIC = Path(__file__).resolve().parent / "live_static"
MODES = ("degraded", "sharpened", "split")
PRESET_CHOICES = ("off", *PRESETS)
SIZES = {"640x360": (640, 360), "960x540": (960, 540), "1280x720": (1280, 720)}
MODELS = ("student", "unsharp")  # the teacher is far too slow for live video on a CPU
MAX_PEERS = 8
PEERS: set = set()
POOL = ThreadPoolExecutor(2, thread_name_prefix="live")


def scale_to(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fit inside size=(w, h) keeping the aspect ratio, sides even (area filter when shrinking)."""
    h, w = frame.shape[:2]
    s = min(size[0] / w, size[1] / h)
    nw, nh = max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)
    if (nw, nh) == (w, h):
        return frame
    return cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def compose(degraded: np.ndarray, sharpened: np.ndarray, mode: str) -> np.ndarray:
    """What the viewer sees: one of the two, or the left half degraded and the right half sharpened."""
    if mode == "degraded":
        return degraded
    if mode == "sharpened":
        return sharpened
    w = degraded.shape[1]
    out = np.concatenate([degraded[:, : w // 2], sharpened[:, w // 2:]], axis=1)
    out[:, w // 2 - 1: w // 2 + 1] = 255
    return out


class Session:
    """One viewer's settings and measured speed."""

    def __init__(self, mode: str = "split", preset: str = "medium", size: str = "640x360", model: str = "student",
                 backend: str = "auto"):
        self.backend = backend
        self.update({"mode": mode, "preset": preset, "size": size, "model": model})
        self.shown: deque = deque(maxlen=60)  # times frames were sent back (fps over the last ~2 s)
        self.model_ms: deque = deque(maxlen=30)
        self.frames = 0

    def update(self, settings: dict) -> None:
        """Validate and apply settings from the browser; a bad value raises ValueError naming the choices."""
        checks = {"mode": MODES, "preset": PRESET_CHOICES, "size": tuple(SIZES), "model": MODELS}
        for key, value in settings.items():
            if key not in checks:
                raise ValueError(f"unknown setting {key!r}; known: {sorted(checks)}")
            if value not in checks[key]:
                raise ValueError(f"{key} must be one of {checks[key]}, got {value!r}")
        for key, value in settings.items():
            setattr(self, key, value)

    def process(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """Camera frame -> (frame to send back, ms the model took)."""
        from kd.sharpen import sharpen

        mode, preset, model = self.mode, self.preset, self.model
        work = np.ascontiguousarray(scale_to(rgb, SIZES[self.size]))
        degraded = degrade(work, preset) if preset != "off" else work
        if mode == "degraded":
            return degraded, 0.0
        t = time.perf_counter()
        sharpened = sharpen(degraded, model=model, backend=self.backend, stream=preset if preset != "off" else None)
        return compose(degraded, sharpened, mode), (time.perf_counter() - t) * 1000

    def stats(self) -> dict:
        now = time.perf_counter()
        recent = [t for t in self.shown if now - t < 2.0]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        return {"fps": round(fps, 1), "model_ms": round(float(np.median(self.model_ms)), 1) if self.model_ms else None,
                "frames": self.frames, "mode": self.mode, "preset": self.preset, "size": self.size, "model": self.model}


def sharpen_track(source, session: Session, channel_ref: dict):
    """The track we send back: the newest camera frame, processed in a worker thread."""
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError
    from av import VideoFrame

    class SharpenTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.latest, self.fresh, self.ended = None, asyncio.Event(), False
            self.reader = asyncio.ensure_future(self._read())

        async def _read(self):
            try:
                while True:
                    self.latest = await source.recv()
                    self.fresh.set()
            except MediaStreamError:
                self.ended = True
                self.fresh.set()

        async def recv(self):
            await self.fresh.wait()
            self.fresh.clear()
            if self.ended:
                self.stop()
                raise MediaStreamError
            frame = self.latest
            out, ms = await asyncio.get_running_loop().run_in_executor(
                POOL, session.process, frame.to_ndarray(format="rgb24"))
            session.frames += 1
            session.shown.append(time.perf_counter())
            if ms:
                session.model_ms.append(ms)
            channel = channel_ref.get("channel")
            if channel is not None and channel.readyState == "open" and session.frames % 5 == 0:
                channel.send(json.dumps(session.stats()))
            result = VideoFrame.from_ndarray(np.ascontiguousarray(out), format="rgb24")
            result.pts, result.time_base = frame.pts, frame.time_base
            return result

        def stop(self):
            self.reader.cancel()
            super().stop()

    return SharpenTrack()


async def offer(request):
    """SDP offer (plus optional initial settings) -> SDP answer; the camera track comes back processed."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from starlette.responses import JSONResponse

    try:
        params = await request.json()
        desc = RTCSessionDescription(sdp=params["sdp"], type=params["type"])
        session = Session(**{k: params[k] for k in ("mode", "preset", "size", "model") if k in params})
    except (ValueError, KeyError, TypeError) as e:
        return JSONResponse({"error": f"bad offer: {e}"}, status_code=400)
    if len(PEERS) >= MAX_PEERS:
        return JSONResponse({"error": "too many live viewers, try again later"}, status_code=503)
    pc = RTCPeerConnection()
    PEERS.add(pc)
    channel_ref: dict = {}

    @pc.on("datachannel")
    def on_datachannel(channel):
        channel_ref["channel"] = channel

        @channel.on("message")
        def on_message(message):
            try:
                session.update(json.loads(message))
                channel.send(json.dumps(session.stats()))
            except (ValueError, TypeError) as e:
                channel.send(json.dumps({"error": str(e)}))

    @pc.on("track")
    def on_track(track):
        if track.kind == "video":
            pc.addTrack(sharpen_track(track, session, channel_ref))

    @pc.on("connectionstatechange")
    async def on_state():
        if pc.connectionState in ("failed", "closed"):
            await pc.close()
            PEERS.discard(pc)

    try:
        await pc.setRemoteDescription(desc)
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as e:  # a malformed SDP: say so instead of a server error
        await pc.close()
        PEERS.discard(pc)
        return JSONResponse({"error": f"bad offer: {e}"}, status_code=400)
    return JSONResponse({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})


def routes() -> list:
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    return [Route("/live/offer", offer, methods=["POST"]),
            Mount("/live", app=StaticFiles(directory=STATIC, html=True), name="live")]


@contextlib.asynccontextmanager
async def lifespan(app):
    yield
    await asyncio.gather(*(pc.close() for pc in list(PEERS)), return_exceptions=True)
    PEERS.clear()


def app_kwargs() -> dict:
    """Keyword arguments for ``Blocks.launch(app_kwargs=...)``: our routes go in front of Gradio's."""
    return {"routes": routes(), "lifespan": lifespan}


def tab() -> None:
    """The Gradio tab: the WebRTC page in a frame (same origin, so the camera permission applies)."""
    import gradio as gr

    gr.Markdown("Your camera over **WebRTC**, as in a call: the server scales each frame to the working size, "
                "degrades it like a poor connection, sharpens it with the student and streams it back. "
                "Open it [full page](live/) if the frame is too small.")
    gr.HTML('<iframe src="live/" allow="camera; microphone; autoplay" title="Live WebRTC sharpening" '
            'style="width:100%;height:620px;border:0" id="live-webrtc-frame"></iframe>')
