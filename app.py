"""sharpkd demo: sharpen video-call frames degraded by a poor connection.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--max-pixels 8000000]

A thin Gradio layer over ``kd.sharpen`` and ``kd.compare``. Also a Hugging Face Space (see README front matter).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import UnidentifiedImageError  # noqa: E402

import kd  # noqa: E402
from kd.compare import fit_to_limit, simulate, timed_sharpen  # noqa: E402
from kd.degrade import PRESETS, Degradation  # noqa: E402
from kd.sharpen import as_array  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parent / "demo"
MODELS = [("Student (real-time)", "student"), ("Teacher (best quality)", "teacher"), ("Unsharp mask (classical)", "unsharp")]
NOT_AN_IMAGE = "That file is not a readable image (corrupt, truncated or another kind of file). Try a PNG, JPEG or WebP."


def image_input(**kwargs) -> gr.Image:
    """A gr.Image whose corrupt or non-image uploads get a clear message instead of a server error.

    (Wrapping the instance's preprocess keeps it a plain "image" component for the browser; a subclass would not be.)
    """
    component = gr.Image(**kwargs)
    decode = component.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise gr.Error(NOT_AN_IMAGE) from e

    component.preprocess = preprocess
    return component


def to_display(arr: np.ndarray) -> np.ndarray:
    """8-bit for the browser (16-bit images keep full depth in the download)."""
    return (arr >> 8).astype(np.uint8) if arr.dtype == np.uint16 else arr


def save_png(arr: np.ndarray) -> str:
    """Write the result as a lossless PNG (16-bit stays 16-bit) and return its path for download."""
    path = Path(tempfile.mkdtemp(prefix="sharpkd_")) / "sharpened.png"
    bgr = arr if arr.ndim == 2 or arr.shape[2] == 1 else cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), bgr)
    return str(path)


def read_input(image, max_pixels: int) -> tuple[np.ndarray, str]:
    if image is None:
        raise gr.Error("Upload, paste or capture an image first.")
    try:
        arr, _ = as_array(image)
    except ValueError as e:
        raise gr.Error(str(e)) from e
    return fit_to_limit(np.ascontiguousarray(arr), max_pixels)


def open_study(config: str | None, db_url: str | None):
    """The rating study for the Rate tab: its config, database and stimuli (built on first start). None if off."""
    if not config:
        return None
    from study import db
    from study.__main__ import stimuli_dir
    from study.config import load_config
    from study.stimuli import build

    cfg = load_config(config)
    engine = db.connect(db_url or db.default_url(config))
    build(cfg, engine, stimuli_dir(Path(config)))
    return cfg, engine


def make_app(max_pixels: int = 8_000_000, study=None) -> gr.Blocks:
    def sharpen_image(image, model: str = "student"):
        """The /sharpen endpoint: (image, model) -> sharpened image. The views beside it get the rest via state."""
        arr, notice = read_input(image, max_pixels)
        if model not in dict(MODELS).values():
            raise gr.Error(f"Unknown model {model!r}; choose one of {[v for _, v in MODELS]}.")
        try:
            out, secs = timed_sharpen(arr, model)
        except ValueError as e:
            raise gr.Error(str(e)) from e
        if notice:
            gr.Warning(notice)
        h, w = arr.shape[:2]
        label = next(k for k, v in MODELS if v == model)
        info = f"**{label}**: {w}×{h} px in **{secs * 1000:.0f} ms**" + (f"  \n⚠️ {notice}" if notice else "")
        shown = to_display(out)
        return shown, {"before": to_display(arr), "after": shown, "info": info, "png": save_png(out)}

    def show_views(result: dict | None):
        if not result:
            return None, None, "", None
        return (result["before"], result["after"]), result["before"], result["info"], result["png"]

    def simulate_tab(image, preset: str, scale: float, quality: int):
        arr, notice = read_input(image, min(max_pixels, 4_000_000))
        rgb = to_display(arr)
        rgb = np.repeat(rgb[:, :, None], 3, 2) if rgb.ndim == 2 else rgb[:, :, :3] if rgb.shape[2] >= 3 else np.repeat(rgb, 3, 2)
        d = PRESETS[preset] if preset in PRESETS else Degradation(scale=float(scale), codec="jpeg", quality=int(quality))
        images, table = simulate(np.ascontiguousarray(rgb), d)
        if notice:
            gr.Warning(notice)
        return images["degraded input"], images["student (real-time)"], images["teacher"], table

    def live_frame(frame, preset: str, last: float | None):
        if frame is None:
            return None, "waiting for the camera…", last
        now = time.perf_counter()
        src = kd.degrade(frame[:, :, :3], preset) if preset in PRESETS else frame[:, :, :3]
        out, secs = timed_sharpen(src, "student")
        fps = f"{1 / (now - last):.1f} fps shown · " if last else ""
        return out, f"{fps}student: {secs * 1000:.0f} ms/frame ({frame.shape[1]}×{frame.shape[0]})", now

    examples = sorted(str(p) for p in (DEMO_DIR / "degraded").glob("*.png"))
    clean_examples = sorted(str(p) for p in (DEMO_DIR / "clean").glob("*.png"))

    with gr.Blocks(title="sharpkd: sharpen video-call frames") as app:
        gr.Markdown("# sharpkd\nRestore frames that a poor connection made soft and blocky. A tiny **student** network, "
                    "distilled from a large **teacher**, runs in real time.")
        with gr.Tab("Sharpen"):
            with gr.Row():
                with gr.Column():
                    inp = image_input(label="Degraded frame", sources=["upload", "webcam", "clipboard"], type="pil",
                                    image_mode=None, elem_id="sharpen-input")
                    model = gr.Radio(MODELS, value="student", label="Model")
                    go = gr.Button("Sharpen", variant="primary", elem_id="sharpen-button")
                    if examples:
                        gr.Examples(examples, inputs=inp, label="Examples (simulated poor connection)")
                with gr.Column():
                    slider = gr.ImageSlider(label="Before / after (drag)", elem_id="sharpen-slider", format="png")
                    info = gr.Markdown(elem_id="sharpen-info")
                    download = gr.File(label="Download result (PNG)")
            with gr.Row():
                before = gr.Image(label="Before", interactive=False, format="png")
                after = gr.Image(label="After", interactive=False, format="png", elem_id="sharpen-output")
            result = gr.State(None)
            go.click(sharpen_image, [inp, model], [after, result], api_name="sharpen").then(
                show_views, result, [slider, before, info, download], api_visibility="private")

        with gr.Tab("Simulate bandwidth"):
            with gr.Row():
                with gr.Column():
                    clean = image_input(label="Clean photo", sources=["upload", "webcam", "clipboard"], type="pil",
                                      image_mode=None)
                    preset = gr.Radio([*PRESETS, "custom"], value="medium", label="Connection")
                    scale = gr.Slider(1, 6, value=2, step=0.1, label="Custom: downscale factor")
                    quality = gr.Slider(5, 95, value=30, step=1, label="Custom: JPEG quality")
                    run = gr.Button("Simulate and restore", variant="primary")
                    if clean_examples:
                        gr.Examples(clean_examples, inputs=clean)
                with gr.Column():
                    table = gr.Dataframe(label="Against the clean photo", interactive=False)
            with gr.Row():
                deg_out = gr.Image(label="Degraded (what the receiver sees)", interactive=False, format="png")
                stu_out = gr.Image(label="Student", interactive=False, format="png")
                tea_out = gr.Image(label="Teacher", interactive=False, format="png")
            run.click(simulate_tab, [clean, preset, scale, quality], [deg_out, stu_out, tea_out, table],
                      api_name="simulate")

        with gr.Tab("Live"):
            gr.Markdown("Your webcam, sharpened by the student as it streams. On a good camera, simulate a poor "
                        "connection first to see the effect.")
            with gr.Row():
                cam = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy")
                live_out = gr.Image(label="Sharpened", interactive=False, format="png")
            live_preset = gr.Radio(["off", *PRESETS], value="medium", label="Simulate connection before sharpening")
            fps = gr.Markdown()
            last = gr.State(None)
            cam.stream(live_frame, [cam, live_preset, last], [live_out, fps, last], stream_every=0.1,
                       time_limit=120, concurrency_limit=4, api_visibility="private")

        with gr.Tab("Rate"):
            if study is None:
                gr.Markdown("The rating study is off. Start the app with `--study study/example.toml` to rate here.")
            else:
                from study.ui import render_rating

                gr.Markdown("Help us measure quality: rate pairs of pictures. It takes about five minutes.")
                render_rating(*study, app)
    return app


def warm_up() -> None:
    """Load both networks (and export them for the fastest runtime, once) at start so no visitor waits for it."""
    from kd.runtime import runner

    for name in ("student", "teacher"):
        runner(name, "auto")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--share", action="store_true", help="also serve through a public Gradio link")
    ap.add_argument("--max-pixels", type=int, default=8_000_000, help="larger images are downscaled, with a notice")
    ap.add_argument("--concurrency", type=int, default=2, help="requests processed at once (others queue)")
    ap.add_argument("--study", default=str(Path(__file__).resolve().parent / "study" / "example.toml"),
                    help="rating study shown in the Rate tab ('' to turn it off)")
    ap.add_argument("--study-db", default=None, help="database URL for the study (default: SQLite beside its file)")
    a = ap.parse_args(argv)
    warm_up()
    study = open_study(a.study, a.study_db)
    app = make_app(a.max_pixels, study)
    app.queue(default_concurrency_limit=a.concurrency, max_size=64)
    allowed = [str(Path(a.study).resolve().parent)] if a.study else []
    app.launch(server_name=a.host, server_port=a.port, share=a.share, max_file_size="30mb", allowed_paths=allowed)


if __name__ == "__main__":
    main()
