"""Headless Chromium for checking the in-browser student: its launch flags, a fake camera fed from frames, and
passing frames in and out of a page. Used by ``kd.bench_web`` and the browser tests (``pip install playwright``;
Debian's ``chromium``)."""
from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def write_y4m(path: Path | str, frames: list[np.ndarray], fps: int = 15) -> Path:
    """Frames (RGB uint8, even sizes) as a 4:2:0 y4m file, the format Chromium's fake camera reads."""
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"a 4:2:0 camera needs even sizes, got {w}×{h}")
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return Path(path)


def launch(playwright, camera: Path | str | None = None, webgpu: bool = False):
    """Chromium as the tests and benchmark run it: headless, no GPU (so WASM), a fake camera playing ``camera``
    (a y4m file) when given, autoplay allowed. ``webgpu``: a WebGPU adapter on the CPU (SwiftShader): far too slow to
    time, but it runs ONNX Runtime Web's WebGPU backend for real, so its output can be checked."""
    if CHROMIUM is None:
        raise RuntimeError("Chromium is not installed (Debian: apt-get install chromium)")
    args = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-features=WebRtcHideLocalIpsWithMdns"]
    args += ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"] if webgpu else ["--disable-gpu"]
    if camera is not None:
        args += ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-video-capture={camera}"]
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args)


def to_page(frame: np.ndarray) -> str:
    """An RGB uint8 frame as a PNG data URL, for the page's ``sharpkdTest.decode`` (lossless to ImageData)."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the frame as PNG")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()


def from_page(image: dict) -> np.ndarray:
    """``sharpkdTest.pack(imageData)``'s {width, height, b64} as an RGB uint8 frame."""
    rgba = np.frombuffer(base64.b64decode(image["b64"]), np.uint8)
    return rgba.reshape(image["height"], image["width"], 4)[:, :, :3].copy()


# installed in every page opened by ``open_page``: frames in (PNG data URL -> ImageData, exactly: an untagged PNG
# drawn 1:1 is not colour-managed or smoothed) and out (ImageData -> base64 RGBA, far smaller than a JSON array)
PAGE_HELPERS = """window.sharpkdTest = {
  async decode(url) { const img = new Image(); img.src = url; await img.decode();
    const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d', { willReadFrequently: true }); ctx.drawImage(img, 0, 0);
    return ctx.getImageData(0, 0, c.width, c.height); },
  pack(image) { const u8 = new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.length); let s = '';
    for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
    return { width: image.width, height: image.height, b64: btoa(s) }; },
};"""


def open_page(browser, url: str, viewport: tuple[int, int] = (1400, 1000)):
    """A new page with ``PAGE_HELPERS``, at ``url``."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.add_init_script(PAGE_HELPERS)
    page.goto(url)
    return page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What a CDN such as jsDelivr sends: responses any origin may load (for ``kd.web.WithHeaders``).
CDN_HEADERS = [(b"access-control-allow-origin", b"*"), (b"cross-origin-resource-policy", b"cross-origin")]


@contextlib.contextmanager
def web_server(routes=None):
    """``kd.web``'s routes alone (no Gradio), or the given Starlette ``routes``, served from a thread of this
    process on a free port: yields the base URL (``…/web/`` for kd.web's)."""
    import uvicorn
    from starlette.applications import Starlette

    from kd import web

    port = free_port()
    app = Starlette(routes=web.routes() if routes is None else routes)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("kd.web did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/" + ("web/" if routes is None else "")
    finally:
        server.should_exit = True
        thread.join(10)
