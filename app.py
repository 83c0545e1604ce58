"""sharpkd demo: sharpen video-call frames degraded by a poor connection.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--max-pixels 8000000]

A thin Gradio layer over ``kd.sharpen`` and ``kd.compare``. Also a Hugging Face Space (see README front matter).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

from kd import imagefile  # noqa: E402
from kd.compare import simulate, timed_sharpen  # noqa: E402
from kd.degrade import PRESETS, Degradation  # noqa: E402
from kd.estimate import Estimate, for_model  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parent / "demo"
MODELS = [("Student (real-time)", "student"), ("Teacher (best quality)", "teacher"), ("Unsharp mask (classical)", "unsharp")]
NOT_AN_IMAGE = "That file is not a readable image (corrupt, truncated or another kind of file). Try a PNG, JPEG or WebP."
TOO_LARGE = "That image has too many pixels to open safely. Please downscale it first."
# what the receiver may know about the frame: stream-aware nets restore better when told (blind ones ignore it)
KNOWN = [("Auto: estimate it from the frame", "auto"), ("Unknown (restore blind)", "unknown"),
         *((f"{name}: {d.describe()}", name) for name, d in PRESETS.items())]


def user_error(message: str) -> gr.Error:
    """A mistake the user can fix: said in the browser, not logged as a server traceback (those are for bugs)."""
    return gr.Error(message, print_exception=False)


def image_input(**kwargs) -> gr.Image:
    """A gr.Image whose corrupt or non-image uploads get a clear message instead of a server error.

    (Wrapping the instance's preprocess keeps it a plain "image" component for the browser; a subclass would not be.)
    """
    component = gr.Image(**kwargs)
    decode = component.preprocess

    def preprocess(payload):
        try:
            return decode(payload)  # with type="filepath" this reads the header only
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise user_error(TOO_LARGE) from e
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise user_error(NOT_AN_IMAGE) from e

    component.preprocess = preprocess
    return component


def to_display(arr: np.ndarray) -> np.ndarray:
    """8-bit for the browser (16-bit and float images keep full depth in the download)."""
    if arr.dtype.kind == "f":
        return (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    return (arr >> 8).astype(np.uint8) if arr.dtype == np.uint16 else arr


class ResultFiles:
    """One folder for the app's downloadable results; files older than ``keep_s`` go as new ones arrive."""

    def __init__(self, keep_s: float):
        self.folder = Path(tempfile.mkdtemp(prefix="sharpkd_"))
        self.keep_s = keep_s

    def save_png(self, arr: np.ndarray) -> str:
        """Write the result as a lossless PNG (16-bit stays 16-bit) and return its path for download."""
        now = time.time()
        for old in self.folder.glob("*.png"):
            if now - old.stat().st_mtime > self.keep_s:
                old.unlink(missing_ok=True)
        return str(imagefile.write(self.folder / f"sharpened-{uuid.uuid4().hex[:12]}.png", arr))


def read_input(path: str | None, max_pixels: int) -> tuple[np.ndarray, str]:
    """Decode an upload at full depth; its size is checked from the header before any pixel is decoded."""
    if path is None:
        raise user_error("Upload, paste or capture an image first.")
    try:
        return imagefile.read(path, max_pixels, decode_limit=max(50_000_000, 4 * max_pixels))
    except ValueError as e:
        raise user_error(TOO_LARGE if "too large" in str(e) else NOT_AN_IMAGE) from e


def open_study(config: str | None, db_url: str | None):
    """The rating study for the Rate tab: (config, database, hosting, build), or None if off. The database
    (``study.hosting``: where, and whether votes persist and may be collected) is said at start; the stimuli are
    built in the background (``study.stimuli.BackgroundBuild``: the log counts them, the Rate tab says it is being
    prepared), so the app serves at once."""
    if not config:
        return None
    from study import hosting
    from study.__main__ import stimuli_dir
    from study.config import load_config
    from study.stimuli import BackgroundBuild

    cfg = load_config(config)
    hosted = hosting.plan(config, db_url)
    print(f"Rating study: {hosted.notice()}", flush=True)
    if hosted.refusal:
        print(f"Rating study: {hosted.refusal}", flush=True)
    engine = hosting.connect(hosted)
    return cfg, engine, hosted, BackgroundBuild(cfg, engine, stimuli_dir(Path(config)))


def make_app(max_pixels: int = 8_000_000, study=None, keep_files_s: int = 3600) -> gr.Blocks:
    results = ResultFiles(keep_files_s)

    def sharpen_image(image, model: str = "student", known: str = "auto", progress=gr.Progress()):
        """The /sharpen endpoint: (image, model, what happened to it: auto (estimated), unknown or a preset) ->
        (preview, lossless PNG). The views beside it get the rest via state. The teacher takes tens of seconds on a
        photo here, so the bar follows its blocks."""
        arr, notice = read_input(image, max_pixels)
        if model not in dict(MODELS).values():
            raise user_error(f"Unknown model {model!r}; choose one of {[v for _, v in MODELS]}.")
        stream = None if known == "unknown" else known
        if known == "auto":  # estimated once here, from the file's JPEG tables and pixels
            stream = for_model(model, arr, imagefile.jpeg_quantization(image))
        try:
            label = next(k for k, v in MODELS if v == model)
            out, secs = timed_sharpen(arr, model, stream=stream,
                                      progress=lambda f: progress(f, desc=f"{label}: restoring {arr.shape[1]}×{arr.shape[0]} px"))
        except ValueError as e:
            raise user_error(str(e)) from e
        if notice:
            gr.Warning(notice)
        h, w = arr.shape[:2]
        info = f"**{label}**: {w}×{h} px in **{secs * 1000:.0f} ms**" + (f"  \n⚠️ {notice}" if notice else "")
        if isinstance(stream, Estimate):
            info += f"  \nStream: {stream.describe()}. Not right? Choose what the connection did, and sharpen again."
        shown = to_display(out)
        return shown, results.save_png(out), {"before": to_display(arr), "after": shown, "info": info}

    def show_views(result: dict | None):
        if not result:
            return None, None, ""
        return (result["before"], result["after"]), result["before"], result["info"]

    def simulate_tab(image, preset: str, scale: float, quality: int):
        arr, notice = read_input(image, min(max_pixels, 4_000_000))
        rgb = imagefile.rgb(to_display(arr))
        d = PRESETS[preset] if preset in PRESETS else Degradation(scale=float(scale), codec="jpeg", quality=int(quality))
        try:
            images, table = simulate(np.ascontiguousarray(rgb), d)
        except ValueError as e:
            raise user_error(str(e)) from e
        if notice:
            gr.Warning(notice)
        return images["degraded input"], images["student (real-time)"], images["teacher"], table

    examples = sorted(str(p) for p in (DEMO_DIR / "degraded").glob("*.png"))
    clean_examples = sorted(str(p) for p in (DEMO_DIR / "clean").glob("*.png"))

    with gr.Blocks(title="sharpkd: sharpen video-call frames", delete_cache=(max(1, keep_files_s // 2), keep_files_s)) as app:
        gr.Markdown("# sharpkd\nRestore frames that a poor connection made soft and blocky.")  # the Rate tab shows it too
        with gr.Tab("Sharpen"):
            gr.Markdown("A tiny **student** network is made to run live; a large **teacher** gives the best quality "
                        "offline.")  # here, not in the page's header: a rater of the study must not read model names
            with gr.Row():
                with gr.Column():
                    inp = image_input(label="Degraded frame", sources=["upload", "webcam", "clipboard"], type="filepath",
                                      image_mode=None, elem_id="sharpen-input")
                    model = gr.Radio(MODELS, value="student", label="Model")
                    known = gr.Dropdown(KNOWN, value="auto", label="What the connection did to it, if known",
                                        info="a receiver knows its stream's size and quality; auto estimates them "
                                             "(shown with the result); choose one to override it")
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
            go.click(sharpen_image, [inp, model, known], [after, download, result], api_name="sharpen").then(
                show_views, result, [slider, before, info], api_visibility="private")

        with gr.Tab("Simulate bandwidth"):
            with gr.Row():
                with gr.Column():
                    clean = image_input(label="Clean photo", sources=["upload", "webcam", "clipboard"], type="filepath",
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

        with gr.Tab("Live"):  # kd/web.py: the student runs in the viewer's browser, not here
            from kd.web import tab as live_tab

            live_tab()

        with gr.Tab("Rate"):
            if study is None:
                gr.Markdown("The rating study is off. Start the app with `--study study/example.toml` to rate here.")
            else:
                from study.ui import render_hosted

                cfg, engine, hosted, preparing = study
                render_hosted(cfg, engine, hosted, app, preparing)
    return app


def warm_up() -> None:
    """Load both networks (and export them for the fastest runtime, once) at start so no visitor waits for it; also
    the student as the Live tab's browsers fetch it."""
    from kd.runtime import runner
    from kd.web import BROWSER_MODELS, browser_model

    for name in ("student", "teacher"):
        runner(name, "auto")
    for name in BROWSER_MODELS:
        browser_model(name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--share", action="store_true", help="also serve through a public Gradio link")
    ap.add_argument("--max-pixels", type=int, default=8_000_000, help="larger images are downscaled, with a notice")
    ap.add_argument("--concurrency", type=int, default=2, help="requests processed at once (others queue)")
    ap.add_argument("--study", default=str(Path(__file__).resolve().parent / "study" / "example.toml"),
                    help="rating study shown in the Rate tab ('' to turn it off)")
    ap.add_argument("--study-db", default=None, help="database URL for the study (default: $STUDY_DB_URL, else on a "
                    "Space SQLite in /data if writable, else SQLite beside the study's file)")
    ap.add_argument("--keep-files", type=int, default=3600, metavar="SECONDS",
                    help="uploads and results older than this are deleted from the server's temp folders")
    a = ap.parse_args(argv)
    warm_up()
    try:
        study = open_study(a.study, a.study_db)
    except (ValueError, RuntimeError) as e:  # a bad study file or database URL, an unreachable database
        raise SystemExit(f"Rating study: {e}") from None
    app = make_app(a.max_pixels, study, a.keep_files)
    app.queue(default_concurrency_limit=a.concurrency, max_size=64)
    allowed = []
    if a.study:  # only the study's opaque rater-facing images are readable over the web, never its database or cache
        from study.__main__ import stimuli_dir
        from study.stimuli import serve_dir

        allowed = [str(serve_dir(stimuli_dir(Path(a.study))).resolve())]
    from kd.web import app_kwargs as web_routes  # the browser sharpener's files, on the same server

    app.launch(server_name=a.host, server_port=a.port, share=a.share, max_file_size="30mb", allowed_paths=allowed,
               app_kwargs=web_routes())


if __name__ == "__main__":
    main()
