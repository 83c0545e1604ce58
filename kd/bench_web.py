"""How fast the student runs in a browser, and what it gains on a real in-page call: a table, not a test.

    python -m kd.bench_web [--sizes 360 720] [--threads 1 2] [--repeats 20] [--call-seconds 20]

Headless Chromium (no GPU here, so ONNX Runtime Web's WASM backend with SIMD; the page is cross-origin isolated, so
threads work) runs ``web/sharpkd.js`` on a degraded photo at each size: the median ms of ``Sharpener.sharpen`` (RGBA
bytes in and out, padding and rounding in the graph) after warm-up, and the fps it allows. ``--call-seconds``: the
Live page (``web/live.html``) calls itself with a fake camera playing a still photo at 640×360, capped at
``--kbps``, and the frames it sharpened are scored against the camera's picture (ΔPSNR, as ``kd.evaluate``'s).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kd.browser import from_page, launch, open_page, to_page, web_server, write_y4m
from kd.degrade import degrade, stream_condition
from kd.metrics import psnr
from kd.runtime import cpu_name
from kd.temporal import fit, load_photo

SIZES = {360: (640, 360), 540: (960, 540), 720: (1280, 720)}
LOAD = """async ([threads]) => { const m = await import('./sharpkd.js');
  window.sharpener = await m.Sharpener.load({ backend: 'wasm', threads }); return window.sharpener.info; }"""
TIME = """async ([url, vec, repeats]) => { const img = await sharpkdTest.decode(url); const v = Float32Array.from(vec);
  for (let i = 0; i < 3; i++) await sharpener.sharpen(img, v);
  const ms = []; for (let i = 0; i < repeats; i++) { const t = performance.now(); await sharpener.sharpen(img, v);
    ms.push(performance.now() - t); }
  return ms; }"""


def speed_rows(url: str, sizes: list[int], threads: list[int], repeats: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    photo = load_photo("astronaut")
    rows = []
    with sync_playwright() as p:
        browser = launch(p)
        for n in threads:
            page = open_page(browser, url + "live.html")
            info = page.evaluate(LOAD, [n])
            for size in sizes:
                frame = degrade(fit(photo, SIZES[size]), "medium")
                ms = page.evaluate(TIME, [to_page(frame), stream_condition("medium").tolist(), repeats])
                med = float(np.median(ms))
                rows.append({"size": f"{SIZES[size][0]}×{SIZES[size][1]}", "backend": info["backend"],
                             "threads": info["threads"], "ms per frame": round(med, 1),
                             "fps": round(1000 / med, 1), "ms min": round(min(ms), 1)})
                print(rows[-1], flush=True)
            page.close()
        browser.close()
    return rows


def call_row(url: str, seconds: float, kbps: int, codec: str) -> dict:
    """The Live page with a fake camera: ΔPSNR of the sharpened frames against the camera's picture."""
    from playwright.sync_api import sync_playwright

    still = fit(load_photo("astronaut"), SIZES[360])
    clean = cv2.cvtColor(cv2.cvtColor(still, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)  # what the camera gives
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = launch(p, write_y4m(Path(tmp) / "cam.y4m", [still] * 15))
        page = open_page(browser, url + "live.html")
        page.select_option("#codec", codec)
        page.fill("#bitrate", str(kbps))
        page.dispatch_event("#bitrate", "input")
        page.click("#start")
        page.wait_for_function("() => Number(document.getElementById('stats').dataset.frames || 0) >= 5",
                               timeout=120_000)
        page.wait_for_timeout(seconds * 1000)
        gains, received, sharpened = [], [], []
        for _ in range(5):  # five frames a little apart
            last = page.evaluate("""() => { const l = window.sharpkdLive.live.last;
              return { input: sharpkdTest.pack(l.input), output: sharpkdTest.pack(l.output), received: l.received }; }""")
            a, b = from_page(last["input"]), from_page(last["output"])
            received.append(psnr(a, clean))
            sharpened.append(psnr(b, clean))
            gains.append(sharpened[-1] - received[-1])
            page.wait_for_timeout(700)
        stats = page.locator("#stats").get_attribute("data-fps"), page.locator("#stats").get_attribute("data-decoded")
        told = last["received"]
        browser.close()
    return {"codec": codec, "kbps cap": kbps, "received": stats[1], "told": told, "fps": stats[0],
            "PSNR received": round(float(np.mean(received)), 2), "PSNR sharpened": round(float(np.mean(sharpened)), 2),
            "ΔPSNR": round(float(np.mean(gains)), 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.bench_web", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[360, 720], choices=sorted(SIZES))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--call-seconds", type=float, default=15, help="0: skip the in-page call")
    ap.add_argument("--kbps", type=int, default=300)
    ap.add_argument("--codec", default="vp8", choices=["vp8", "h264"])
    a = ap.parse_args(argv)
    with web_server() as url:
        rows = speed_rows(url, a.sizes, a.threads, a.repeats)
        call = call_row(url, a.call_seconds, a.kbps, a.codec) if a.call_seconds > 0 else None
    print(f"\nHeadless Chromium, ONNX Runtime Web WASM (SIMD), {cpu_name()}, {platform.machine()}; "
          f"the student told 'medium'; medians of {a.repeats} frames after 3 warm-up frames\n")
    print(pd.DataFrame(rows).to_markdown(index=False))
    if call:
        print("\nIn-page call (web/live.html, fake camera: a still photo at 640×360), mean of 5 frames\n")
        print(pd.DataFrame([call]).to_markdown(index=False))


if __name__ == "__main__":
    main()
