"""How fast the student runs in a browser, and what it gains on a real in-page call: a table, not a test.

    python -m kd.bench_web [--models student student_lite] [--sizes 360 720] [--threads 1 2] [--repeats 20]
                           [--call-seconds 15] [--kbps 1500 300 150] [--out results]

Headless Chromium (no GPU here, so ONNX Runtime Web's WASM backend with SIMD; the page is cross-origin isolated, so
threads work) runs ``web/sharpkd.js`` with each browser student on a degraded photo at each size: the median ms of ``Sharpener.sharpen`` (RGBA
bytes in and out, padding and rounding in the graph) after warm-up, and the fps it allows. ``--call-seconds``: the
Live page (``web/live.html``) calls itself with a fake camera playing a slow pan over a photo at 640×360, capped at
each of ``--kbps`` with each student, and the frames it sharpened are scored against the camera's picture (ΔPSNR, as ``kd.evaluate``'s).
The Live page's own fps depends on the fake camera and the call as well as the net; the speed rows time the net.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kd.browser import from_page, launch, open_page, to_page, web_server, write_y4m
from kd.degrade import degrade, stream_condition
from kd.metrics import psnr
from kd.runtime import cpu_name
from kd.clips import fit, load_photo, pan_clip
from kd.web import BROWSER_MODELS, ort_version

SIZES = {360: (640, 360), 540: (960, 540), 720: (1280, 720)}
LOAD = """async ([threads, model]) => { const m = await import('./sharpkd.js');
  window.sharpener = await m.Sharpener.load({ backend: 'wasm', threads, model: `model/${model}.onnx` });
  return window.sharpener.info; }"""
TIME = """async ([url, vec, repeats]) => { const img = await sharpkdTest.decode(url); const v = Float32Array.from(vec);
  for (let i = 0; i < 3; i++) await sharpener.sharpen(img, v);
  const ms = []; for (let i = 0; i < repeats; i++) { const t = performance.now(); await sharpener.sharpen(img, v);
    ms.push(performance.now() - t); }
  return ms; }"""


def speed_rows(url: str, models: list[str], sizes: list[int], threads: list[int], repeats: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    photo = load_photo("astronaut")
    rows = []
    with sync_playwright() as p:
        browser = launch(p)
        for model in models:
            for n in threads:
                page = open_page(browser, url + "live.html")
                info = page.evaluate(LOAD, [n, model])
                for size in sizes:
                    frame = degrade(fit(photo, SIZES[size]), "medium")
                    ms = page.evaluate(TIME, [to_page(frame), stream_condition("medium").tolist(), repeats])
                    med = float(np.median(ms))
                    rows.append({"model": model, "size": f"{SIZES[size][0]}×{SIZES[size][1]}",
                                 "backend": info["backend"], "threads": info["threads"], "ms per frame": round(med, 1),
                                 "fps": round(1000 / med, 1), "ms min": round(min(ms), 1)})
                    print(rows[-1], flush=True)
                page.close()
        browser.close()
    return rows


# Lighter students one might distil to reach 15 fps at 360p, timed untrained (speed does not depend on the weights):
# the shipped design, then narrower or shallower trunks, all stream-aware with 16 experts on every conv as shipped.
SHIPPED = dict(arch="student", width=16, convs=4, unshuffle=2, tail_kernel=3, context=32, context_pool=8, stream=True,
               experts=16, expert_scope="all")
CANDIDATES = {"shipped design": {}, "width 12": {"width": 12}, "3 convs": {"convs": 3}, "2 convs": {"convs": 2},
              "width 8": {"width": 8}}
TIME_MODELS = """async ([models, url, vec, repeats]) => { const m = await import('./sharpkd.js');
  const sharpeners = [];
  for (const b64 of models) {
    const model = URL.createObjectURL(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))]));
    sharpeners.push(await m.Sharpener.load({ backend: 'wasm', threads: 1, model }));
  }
  const img = await sharpkdTest.decode(url); const v = Float32Array.from(vec);
  for (const s of sharpeners) for (let i = 0; i < 3; i++) await s.sharpen(img, v);
  const ms = sharpeners.map(() => []);
  for (let i = 0; i < repeats; i++) for (let k = 0; k < sharpeners.length; k++) {  // interleaved: load hits all alike
    const t = performance.now(); await sharpeners[k].sharpen(img, v); ms[k].push(performance.now() - t); }
  return ms; }"""


def candidate_rows(url: str, repeats: int) -> list[dict]:
    """ms per 360p frame on one WASM thread of each of ``CANDIDATES``, beside its GFLOP per 720p frame; the
    candidates take turns frame by frame, so a loaded machine slows them alike."""
    import base64

    import torch
    from playwright.sync_api import sync_playwright

    from kd.export import export_onnx_web
    from kd.models import build, count_params
    from kd.runtime import gflops_720p

    frame = degrade(fit(load_photo("astronaut"), SIZES[360]), "medium")
    nets, models = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, change in CANDIDATES.items():
            torch.manual_seed(0)
            net = build(SHIPPED | change).eval()
            torch.nn.init.normal_(net.tail.weight, std=0.01)
            nets[name] = net.for_stream(stream_condition("medium"))
            models.append(base64.b64encode(export_onnx_web(net, Path(tmp) / "candidate.onnx").read_bytes()).decode())
    with sync_playwright() as p:
        browser = launch(p)
        page = open_page(browser, url + "live.html")
        times = page.evaluate(TIME_MODELS, [models, to_page(frame), stream_condition("medium").tolist(), repeats])
        browser.close()
    rows = []
    for (name, plain), ms in zip(nets.items(), times):
        med = float(np.median(ms))
        rows.append({"student": name, "parameters (folded)": count_params(plain),
                     "GFLOP per 720p frame": round(gflops_720p(plain), 2), "ms per 360p frame": round(med, 1),
                     "fps": round(1000 / med, 1), "ms min": round(min(ms), 1)})
    return rows


def call_row(url: str, seconds: float, kbps: int, codec: str, model: str, samples: int = 8) -> dict:
    """The Live page with a fake camera playing a slow pan over a photo: ΔPSNR of the frames it sharpened against
    the camera's own picture. Which camera frame a received one shows is found by matching (the clip loops)."""
    from playwright.sync_api import sync_playwright

    clip = pan_clip(load_photo("astronaut"), SIZES[360], frames=45)
    clean = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420) for f in clip]  # as sent
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = launch(p, write_y4m(Path(tmp) / "cam.y4m", clip))
        page = open_page(browser, url + "live.html")
        page.select_option("#net", model)
        page.select_option("#codec", codec)
        page.fill("#bitrate", str(kbps))
        page.dispatch_event("#bitrate", "input")
        page.click("#start")
        page.wait_for_function("() => Number(document.getElementById('stats').dataset.frames || 0) >= 5",
                               timeout=120_000)
        page.wait_for_timeout(seconds * 1000)
        rows = []
        for _ in range(samples):
            last = page.evaluate("""() => { const l = window.sharpkdLive.live.last;
              return { input: sharpkdTest.pack(l.input), output: sharpkdTest.pack(l.output), received: l.received }; }""")
            a, b = from_page(last["input"]), from_page(last["output"])
            ref = max(clean, key=lambda c: psnr(a, c))
            rows.append((psnr(a, ref), psnr(b, ref), last["received"]))
            page.wait_for_timeout(900)
        stats = page.evaluate("() => ({ ...document.getElementById('stats').dataset })")
        browser.close()
    told = rows[-1][2]
    return {"model": model, "codec": codec, "kbps cap": kbps, "received": stats["decoded"], "shown": "640x360",
            "told (last)": f"÷{told['scale']:.2f}, QP {told['qp']:.1f}" if told["qp"] is not None else str(told),
            "fps": stats["fps"], "PSNR received": round(float(np.mean([r[0] for r in rows])), 2),
            "PSNR sharpened": round(float(np.mean([r[1] for r in rows])), 2),
            "ΔPSNR": round(float(np.mean([r[1] - r[0] for r in rows])), 3), "frames": len(rows)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kd.bench_web", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[360, 720], choices=sorted(SIZES))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--call-seconds", type=float, default=15, help="0: skip the in-page call")
    ap.add_argument("--models", nargs="+", default=list(BROWSER_MODELS), choices=BROWSER_MODELS,
                    help="browser students to time and call with")
    ap.add_argument("--kbps", type=int, nargs="+", default=[1500, 300, 150],
                    help="the in-page call's bandwidth caps (kd.call's phases)")
    ap.add_argument("--codecs", nargs="+", default=["h264", "vp8"], choices=["vp8", "h264"])
    ap.add_argument("--candidates", action="store_true",
                    help="also time untrained lighter students (CANDIDATES) at 360p on one thread")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables to OUT/bench_web.md")
    a = ap.parse_args(argv)
    with web_server() as url:
        rows = speed_rows(url, a.models, a.sizes, a.threads, a.repeats)
        calls = [call_row(url, a.call_seconds, k, c, m) for m in a.models for c in a.codecs for k in a.kbps] \
            if a.call_seconds > 0 else []
        lighter = candidate_rows(url, a.repeats) if a.candidates else []
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    text = (f"Headless Chromium, ONNX Runtime Web {ort_version()} WASM (SIMD), {cpu_name()}, {os.cpu_count()} CPUs, "
            f"load average {load} at the end; each student told 'medium'; medians of {a.repeats} frames after 3 "
            f"warm-up frames\n\n{pd.DataFrame(rows).to_markdown(index=False)}\n")
    if calls:
        text += ("\nIn-page call (web/live.html calling itself; fake camera: a slow pan over a photo at 640×360, shown "
                 f"at that size), mean over sampled sharpened frames\n\n{pd.DataFrame(calls).to_markdown(index=False)}\n")
    if lighter:
        text += ("\nLighter students (untrained, the shipped design's stream-awareness), 640×360 on one WASM thread\n\n"
                 f"{pd.DataFrame(lighter).to_markdown(index=False)}\n")
    print("\n" + text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "bench_web.md").write_text(text)


if __name__ == "__main__":
    main()
