"""The WebRTC live path of app.py: a real browser (headless Chromium with a fake camera fed from a y4m file) calls the
real aiortc endpoint, and the frames it gets back are the degraded / sharpened pictures ``kd`` predicts."""
import base64
import json
import shutil
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from app_server import running_app
from kd.degrade import degrade
from kd.live import Session, compose, scale_to
from kd.sharpen import sharpen
from kd.clips import fit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CAM = (640, 360)


def write_y4m(path, frames, fps=15):
    """Frames (RGB uint8, even sizes) as a 4:2:0 y4m file, the format Chromium's fake camera reads."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())


def camera_view(frame):
    """What the server receives from the fake camera before the browser's codec: the y4m's 4:2:0 round trip."""
    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app("--study", "", timeout=300) as url:  # a loaded 2-core machine starts the app slowly
        yield url


def post(url, payload):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_session_pipeline_and_settings(photo):
    s = Session(mode="split", preset="severe", size="640x360", model="unsharp")
    out, ms = s.process(fit(photo, (1280, 720)))
    assert out.shape == (360, 640, 3) and ms > 0  # scaled to the working size first
    degraded = degrade(scale_to(fit(photo, (1280, 720)), (640, 360)), "severe")
    assert np.array_equal(out[:, :300], degraded[:, :300])
    assert np.array_equal(out[:, 340:], sharpen(degraded, model="unsharp")[:, 340:])
    assert np.array_equal(compose(degraded, degraded + 1, "sharpened"), degraded + 1)
    for bad in ({"mode": "sideways"}, {"preset": "dialup"}, {"size": "7x7"}, {"colour": "red"}):
        with pytest.raises(ValueError):
            s.update(bad)


def test_page_tab_and_bad_offers(server):
    page = urllib.request.urlopen(server + "live/", timeout=10).read().decode()
    assert "live.js" in page and "split" in page
    assert 'src=\\"live/\\"' in urllib.request.urlopen(server + "config", timeout=10).read().decode()
    assert post(server + "live/offer", {"sdp": "v=0 nonsense", "type": "offer"})[0] == 400
    code, body = post(server + "live/offer", {"sdp": "x", "type": "offer", "mode": "sideways"})
    assert code == 400 and "mode must be one of" in body["error"]
    assert post(server + "live/offer", {"type": "offer"})[0] == 400


def grab(page) -> np.ndarray:
    """The remote <video>'s current frame as RGB."""
    url = page.evaluate("""() => { const v = document.getElementById('remote'); const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight; c.getContext('2d').drawImage(v, 0, 0);
        return c.toDataURL('image/png'); }""")
    png = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def wait_frames(page, mode, more=20, timeout=60_000):
    """Wait until the server reports ``mode`` and ``more`` further frames, so what plays was made in that mode."""
    start = int(page.locator("#stats").get_attribute("data-frames") or 0)
    page.wait_for_function(
        f"() => {{ const s = document.getElementById('stats').dataset; "
        f"return s.mode === '{mode}' && Number(s.frames) >= {start + more}; }}", timeout=timeout)
    page.wait_for_timeout(300)


def detail(img: np.ndarray) -> float:
    """Edge energy: the variance of the Laplacian of the luma. Sharpening raises it."""
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F).var())


def halves(img: np.ndarray) -> tuple[float, float]:
    """Edge energy of the left and right halves (a margin left out around the split line)."""
    w = img.shape[1]
    return detail(img[:, 20: w // 2 - 20]), detail(img[:, w // 2 + 20: w - 20])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (tests/run.sh installs it on CI)")
def test_browser_camera_round_trip(server, tmp_path, photo):
    """The camera shows a mirrored still, so both halves of the split view hold the same picture and pass through the
    same codec state: their edge energies must differ as kd.sharpen predicts. (Two lossy codecs on the way add noise
    as large as the student's pixel changes, so frames are compared through that ratio, not pixel by pixel.)"""
    from playwright.sync_api import sync_playwright

    half = fit(photo, (CAM[0] // 2, CAM[1]))
    still = np.concatenate([half, half[:, ::-1]], axis=1)
    write_y4m(tmp_path / "cam.y4m", [still] * 15)
    expected = degrade(camera_view(still), "severe")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={tmp_path / 'cam.y4m'}", "--autoplay-policy=no-user-gesture-required",
            "--disable-features=WebRtcHideLocalIpsWithMdns"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(server + "live/")
        page.select_option("#preset", "severe")
        page.select_option("#model", "unsharp")
        page.check("input[value=degraded]")
        page.click("#start")
        wait_frames(page, "degraded", more=30)  # let the browser's encoder ramp up
        got = {"degraded": grab(page)}
        for mode in ("split", "sharpened"):
            page.check(f"input[value={mode}]")
            wait_frames(page, mode)
            got[mode] = grab(page)
        page.select_option("#model", "student")
        page.check("input[value=split]")
        page.wait_for_function("() => document.getElementById('stats').textContent.includes('student')", timeout=30_000)
        wait_frames(page, "split")
        got["student split"] = grab(page)
        stats = page.locator("#stats").inner_text()
        page.screenshot(path=str(tmp_path / "live.png"))
        browser.close()
    assert all(g.shape == (360, 640, 3) for g in got.values())
    assert "fps" in stats and "student" in stats and "ms/frame" in stats
    # the returned track plays the degraded picture (to within the two codecs on the way)
    psnr = cv2.PSNR(got["degraded"], expected)
    assert psnr > 24, psnr
    ratio = {k: halves(g)[1] / halves(g)[0] for k, g in got.items()}
    predicted = {}
    for m in ("unsharp", "student"):
        left, right = halves(compose(expected, sharpen(expected, model=m), "split"))
        predicted[m] = right / left
    assert 0.85 < ratio["degraded"] < 1.15 and 0.85 < ratio["sharpened"] < 1.15, ratio  # mirrored: halves alike
    for model, key in (("unsharp", "split"), ("student", "student split")):  # the right half sharpened, as predicted
        assert predicted[model] > 1.2, predicted
        assert 1 + 0.4 * (predicted[model] - 1) < ratio[key] < predicted[model] + 0.2, (model, ratio, predicted)
    assert detail(got["sharpened"]) > 1.1 * detail(got["degraded"])
    print(f"PSNR(returned degraded, kd.degrade) {psnr:.2f} dB; split edge-energy ratio right/left: returned "
          f"{ratio}, predicted {predicted}")
