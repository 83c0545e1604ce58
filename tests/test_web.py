"""The student in the browser: its ONNX export, web/sharpkd.js in headless Chromium with the real ONNX Runtime Web
(WASM: no GPU here), and the app's Live tab, a call with itself sharpened client-side."""
import json
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest

import kd
from app_server import running_app
from kd.browser import CHROMIUM, from_page, launch, open_page, to_page, web_server, write_y4m
from kd.degrade import STREAM_FEATURES, Received, degrade, stream_condition
from kd.export import export_onnx_web
from kd.models import build
from kd.clips import fit, load_photo, pan_clip
from kd.web import BROWSER_MODELS, ORT_DIR, browser_model, runtime_info

STREAMS = [Received(2.0, "vp8", 60), Received(4 / 3, "h264", 31.5), "medium", None]
needs_browser = pytest.mark.skipif(CHROMIUM is None or not ORT_DIR.exists(),
                                   reason="needs Debian's chromium and `npm ci --prefix web` (tests/run.sh does both)")


def rgba(frame: np.ndarray) -> np.ndarray:
    return np.concatenate([frame, np.full((*frame.shape[:2], 1), 255, np.uint8)], axis=2)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A degraded photo of an odd size: the graph pads it to the model's multiple of 16 and crops back."""
    return degrade(np.ascontiguousarray(fit(load_photo("astronaut"), (480, 480))[:301, :437]), "medium")


@pytest.mark.parametrize("name", BROWSER_MODELS)
def test_exported_browser_model_is_kd_sharpen(frame, name):
    """The graph a browser runs (RGBA bytes and stream vector in, RGBA out) gives kd.sharpen's output, for every
    kind of stream and each browser student, run here by ONNX Runtime itself."""
    session = ort.InferenceSession(str(browser_model(name)), providers=["CPUExecutionProvider"])
    stream_input = next(i for i in session.get_inputs() if i.name == "stream")
    assert stream_input.shape == [1, STREAM_FEATURES]
    outputs = []
    for stream in STREAMS:
        (out,) = session.run(None, {"rgba": rgba(frame), "stream": stream_condition(stream)[None]})
        assert out.shape == (*frame.shape[:2], 4) and out.dtype == np.uint8 and (out[:, :, 3] == 255).all()
        ref = kd.sharpen(frame, model=name, stream=stream)
        assert np.abs(out[:, :, :3].astype(int) - ref).max() <= 1, stream
        outputs.append(out)
    assert np.abs(outputs[2][:, :, :3].astype(int) - frame).mean() > 0.5  # told 'medium', the student repairs
    assert not np.array_equal(outputs[1], outputs[2])  # and what it is told matters


def test_a_blind_net_is_refused(tmp_path):
    with pytest.raises(ValueError, match="stream-aware"):
        export_onnx_web(build("student"), tmp_path / "blind.onnx")


@pytest.fixture(scope="module")
def site():
    with web_server() as url:
        yield url


def test_served_files_and_clear_errors(site):
    with urllib.request.urlopen(site + "live.html", timeout=10) as r:
        assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"  # WASM threads need isolation
        assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin" and b"live.js" in r.read()
    with urllib.request.urlopen(site + "runtime.json", timeout=10) as r:
        info = json.loads(r.read())
    assert info == runtime_info() and info["version"] in info["cdn"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(site + "model/teacher.onnx", timeout=10)
    assert e.value.code == 404 and "no browser model" in e.value.read().decode()


def test_without_npm_the_page_is_told_where_the_runtime_is(tmp_path, monkeypatch):
    """A server where `npm ci --prefix web` was not run (a hosted Space): the runtime's URLs say how to install it,
    and runtime.json points the module at the same pinned version on a CDN."""
    monkeypatch.setattr("kd.web.ORT_DIR", tmp_path / "not-installed")
    with web_server() as url:
        with urllib.request.urlopen(url + "runtime.json", timeout=10) as r:
            info = json.loads(r.read())
        assert not info["local"] and info["cdn"].endswith(f"onnxruntime-web@{info['version']}/dist/")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "ort/ort.wasm.min.mjs", timeout=10)
        assert e.value.code == 404 and "npm ci --prefix web" in e.value.read().decode()


@pytest.fixture(scope="module")
def playwright():
    """One Playwright for the module (a second one cannot start while another runs in the same thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(site, playwright):
    """sharpkd.js loaded in a cross-origin isolated page, with every request the page makes recorded."""
    browser = launch(playwright)
    page = open_page(browser, site + "live.html")
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.evaluate("""async () => { window.sharpkd = await import('./sharpkd.js');
      window.sharpener = await sharpkd.Sharpener.load(); }""")
    yield page
    browser.close()


@needs_browser
def test_stream_vector_in_javascript_is_pythons(page):
    """sharpkd.js computes kd.degrade.stream_condition(Received(...)) itself, and refuses what Received refuses."""
    cases = [Received(2.0, "vp8", 60), Received(4 / 3, "h264", 31.5), Received(None, "h265", 20), Received(1.0),
             Received(3.0, "vp8", None), Received(), Received(8.0, "vp8", 127), Received(2.5, "h264", 0)]
    for r in cases:
        js = page.evaluate("(r) => Array.from(sharpkd.streamVector(r))", {"scale": r.scale, "codec": r.codec, "qp": r.qp})
        np.testing.assert_allclose(js, stream_condition(r), rtol=1e-6, atol=1e-7, err_msg=str(r))
    for bad in ({"scale": 0.5}, {"codec": "av1", "qp": 10}, {"codec": "h264", "qp": 60}, {"qp": 3}):
        with pytest.raises(ValueError):
            Received(**bad)
        assert "RangeError" in page.evaluate("(r) => { try { sharpkd.streamVector(r); return 'none'; } "
                                             "catch (e) { return e.name; } }", bad)
    assert page.evaluate("() => [sharpkd.codecOf('video/VP8'), sharpkd.codecOf('video/H264'), sharpkd.codecOf('video/AV1')]") \
        == ["vp8", "h264", None]


@needs_browser
def test_browser_output_is_the_python_student(page, frame):
    """ONNX Runtime Web (WASM) in Chromium sharpens a frame as kd.sharpen does, within 2 levels, for every stream."""
    info = page.evaluate("() => ({ ...sharpener.info, features: sharpener.features })")
    assert info["backend"] == "wasm" and info["isolated"] and info["threads"] >= 1 and not info["note"]
    assert info["features"] == STREAM_FEATURES and info["runtime"].endswith("/web/ort/")  # the local copy
    assert info["model"].endswith("/web/model/student_lite.onnx")  # on WASM the light student is the default
    for stream in STREAMS:
        out = page.evaluate("""async ([url, vec]) => sharpkdTest.pack(await sharpener.sharpen(
            await sharpkdTest.decode(url), vec && Float32Array.from(vec)))""",
                            [to_page(frame), None if stream is None else stream_condition(stream).tolist()])
        got, ref = from_page(out), kd.sharpen(frame, model="student_lite", stream=stream)
        assert got.shape == frame.shape
        assert np.abs(got.astype(int) - ref).max() <= 2, stream
        assert np.abs(got.astype(int) - frame).mean() > 0.5  # and it did sharpen
    fetched = [u.split("/web/", 1)[1] for u in page.requests]
    assert fetched.count("model/student_lite.onnx") == 1 and any(u.startswith("ort/") and u.endswith(".wasm") for u in fetched)
    error = page.evaluate("""async () => { try { await sharpener.sharpen(new ImageData(32, 32), new Float32Array(3)); }
        catch (e) { return e.message; } }""")
    assert "7 numbers" in error


@needs_browser
def test_attach_draws_a_track_sharpened_into_a_canvas(page, frame):
    """attach() takes a video MediaStreamTrack too (here a canvas's captured stream, no call): it draws each frame
    sharpened, told the scale from the decoded and canvas sizes (the same here: ÷1), and refuses what it cannot use."""
    h, w = frame.shape[:2]
    last = page.evaluate("""async ([url, w, h]) => { const img = await sharpkdTest.decode(url);
        const source = document.createElement('canvas'); source.width = w; source.height = h;
        const paint = setInterval(() => source.getContext('2d').putImageData(img, 0, 0), 50);
        const track = source.captureStream(20).getVideoTracks()[0];
        const out = document.createElement('canvas'); out.width = w; out.height = h;
        const live = sharpener.attach(track, out);
        while (live.frames < 2) await new Promise((r) => setTimeout(r, 100));
        live.stop(); clearInterval(paint); track.stop();
        const errors = [];
        for (const bad of [[document.body, out], [out, out], [track, document.body]]) {
          try { sharpener.attach(...bad); } catch (e) { errors.push(e.name); } }
        return { input: sharpkdTest.pack(live.last.input), output: sharpkdTest.pack(live.last.output),
                 drawn: sharpkdTest.pack(out.getContext('2d').getImageData(0, 0, w, h)), received: live.last.received,
                 errors }; }""", [to_page(frame), w, h])
    assert last["received"] == {"scale": 1, "codec": None, "qp": None} and last["errors"] == ["TypeError"] * 3
    shown, out = from_page(last["input"]), from_page(last["output"])
    assert np.array_equal(from_page(last["drawn"]), out)  # the canvas shows the sharpened frame
    assert np.abs(out.astype(int) - kd.sharpen(shown, model="student_lite", stream=Received(1.0))).max() <= 2


@needs_browser
def test_webgpu_output_is_the_python_student(site, playwright):
    """ONNX Runtime Web's WebGPU backend (on SwiftShader, Chromium's CPU WebGPU: no GPU here) gives kd.sharpen's
    output too. (Its FiLM Split once needed 11 storage buffers in one shader, over the limit of 10: kd.export now
    writes slices.)"""
    frame = degrade(np.ascontiguousarray(fit(load_photo("astronaut"), (96, 96))[:70, :90]), "medium")
    browser = launch(playwright, webgpu=True)
    try:
        page = open_page(browser, site + "live.html")
        info = page.evaluate("""async () => { window.sharpkd = await import('./sharpkd.js');
          window.sharpener = await sharpkd.Sharpener.load({ backend: 'webgpu' }); return sharpener.info; }""")
        assert info["backend"] == "webgpu"
        for stream in (Received(2.0, "h264", 30), None):
            out = page.evaluate("""async ([url, vec]) => sharpkdTest.pack(await sharpener.sharpen(
                await sharpkdTest.decode(url), vec && Float32Array.from(vec)))""",
                                [to_page(frame), None if stream is None else stream_condition(stream).tolist()])
            assert np.abs(from_page(out).astype(int) - kd.sharpen(frame, model="student", stream=stream)).max() <= 2
    finally:
        browser.close()


@needs_browser
def test_without_npm_the_page_runs_the_pinned_runtime_from_a_cdn(tmp_path, monkeypatch, playwright):
    """A hosted Space, where `npm ci` is not run: the page loads the runtime from another origin (here a local
    server sending the CORS/CORP headers jsDelivr sends, standing in for it offline), threads and all, and says so."""
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from kd.browser import CDN_HEADERS
    from kd.web import WithHeaders

    with web_server([Mount("/npm", app=WithHeaders(StaticFiles(directory=ORT_DIR), CDN_HEADERS))]) as cdn:
        monkeypatch.setattr("kd.web.ORT_DIR", tmp_path / "not-installed")
        monkeypatch.setattr("kd.web.ORT_CDN", cdn + "npm/")
        with web_server() as url:
            browser = launch(playwright)
            try:
                page = open_page(browser, url + "live.html")
                info, width = page.evaluate("""async () => { const m = await import('./sharpkd.js');
                  const s = await m.Sharpener.load({ threads: 2 });
                  return [s.info, (await s.sharpen(new ImageData(48, 32))).width]; }""")
            finally:
                browser.close()
    assert info["runtime"] == cdn + "npm/" and "not installed on this server" in info["note"]
    assert info["threads"] == 2 and info["isolated"] and width == 48


@pytest.fixture(scope="module")
def app_url():
    with running_app("--study", "", timeout=400) as url:  # a loaded 2-core machine starts the app slowly
        yield url


@needs_browser
@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_live_tab_sharpens_the_call_in_the_browser(app_url, playwright, tmp_path, codec):
    """The Live tab: a fake camera (a moving photo) sent over a real WebRTC call inside the page, capped at 150
    kbit/s; the received video is sharpened in the page (no request to the server per frame), told its stream from
    getStats, and its output equals the Python student's on the same received frame, told the same stream."""
    camera = write_y4m(tmp_path / "cam.y4m", pan_clip(load_photo("astronaut"), (640, 360), frames=45))
    browser = launch(playwright, camera)
    try:
        page = open_page(browser, app_url)
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.get_by_role("tab", name="Live", exact=True).click()
        page.locator("iframe#live-frame").wait_for(timeout=30_000)
        live = page.locator("iframe#live-frame").element_handle().content_frame()
        live.locator("#start").wait_for(timeout=30_000)
        live.locator("#codec").select_option(codec)
        live.locator("#bitrate").fill("150")
        live.locator("#bitrate").dispatch_event("input")
        live.locator("#start").click()
        sharpened = "Number(document.getElementById('stats').dataset.frames || 0)"
        live.wait_for_function(f"() => {sharpened} >= 5", timeout=180_000)
        start, seen = live.evaluate(sharpened), len(requests)
        live.wait_for_function(f"() => {sharpened} >= {start + 10}", timeout=180_000)
        during = requests[seen:]
        stats = live.evaluate("() => ({ ...document.getElementById('stats').dataset })")
        text = live.locator("#stats").inner_text()
        last = live.evaluate("""() => { const l = window.sharpkdLive.live.last;
            return { input: sharpkdTest.pack(l.input), output: sharpkdTest.pack(l.output), received: l.received,
                     stream: Array.from(l.stream) }; }""")
        page.screenshot(path=str(tmp_path / "live.png"))
    finally:
        browser.close()
    assert int(stats["frames"]) >= start + 10 and float(stats["fps"]) > 0 and stats["backend"] == "wasm"
    assert stats["codec"] == codec and stats["qp"] and "QP" in text and "kbit/s" in text
    assert not during, during  # ten frames sharpened without a single request: nothing per frame reaches the server
    received = Received(**last["received"])
    assert received.codec == codec and received.qp is not None and received.scale >= 1
    np.testing.assert_allclose(last["stream"], stream_condition(received), rtol=1e-6)
    shown, out = from_page(last["input"]), from_page(last["output"])
    assert shown.shape == out.shape == (360, 640, 3)
    net = stats["model"]  # the page's default ("auto"): on WASM, as here, the light student
    assert net == "student_lite"
    ref = kd.sharpen(shown, model=net, stream=received)
    assert np.abs(out.astype(int) - ref).max() <= 2
    assert np.abs(out.astype(int) - shown).mean() > 0.3, received  # the received video was changed
    print(f"live {codec}: {text}; told {received}; changed {np.abs(out.astype(int) - shown).mean():.2f} levels")
