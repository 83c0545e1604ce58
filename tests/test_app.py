"""Drive the running app like a user: through its API with gradio_client, and in headless Chromium."""
import shutil
import time

import cv2
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app_server import ROOT, running_app
from kd.imagefile import read_image, write
from kd.degrade import degrade

MAX_PIXELS = 300_000
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("study") / "ratings.db"
    with running_app("--max-pixels", str(MAX_PIXELS), "--study-db", f"sqlite:///{db}") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def test_named_endpoints(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert {"/sharpen", "/simulate"} <= set(api["named_endpoints"])


@pytest.mark.parametrize("model", ["student", "teacher", "unsharp"])
def test_sharpen_returns_a_same_size_changed_image(client, tmp_path, photo, model):
    src = tmp_path / "in.png"
    degraded = degrade(np.ascontiguousarray(photo[:301, :257]), "medium")  # odd size
    write(src, degraded)
    preview, png = client.predict(handle_file(str(src)), model, api_name="/sharpen")
    out = read_image(preview)
    assert out.shape == degraded.shape
    assert np.abs(out.astype(int) - degraded).mean() > 0.1
    assert np.array_equal(read_image(png), out)  # the download is the same picture, lossless


def test_sharpen_takes_what_the_connection_did_if_known(client, tmp_path, photo):
    """Optional third input: "auto" (the default: estimated), "unknown" (blind) or a preset, which the stream-aware
    student is told."""
    src = tmp_path / "in.png"
    write(src, degrade(np.ascontiguousarray(photo[:128, :160]), "medium"))
    blind = read_image(client.predict(handle_file(str(src)), "student", "unknown", api_name="/sharpen")[1])
    told = read_image(client.predict(handle_file(str(src)), "student", "medium", api_name="/sharpen")[1])
    assert not np.array_equal(blind, told)  # the shipped student is stream-aware
    default = read_image(client.predict(handle_file(str(src)), "student", api_name="/sharpen")[1])
    assert np.array_equal(default, read_image(client.predict(handle_file(str(src)), "student", "auto",
                                                             api_name="/sharpen")[1]))
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict(handle_file(str(src)), "student", "dial-up", api_name="/sharpen")


def test_grayscale_rgba_and_16_bit_uploads(client, tmp_path, photo):
    crop = np.ascontiguousarray(photo[:200, :160])
    cases = {"gray.png": Image.fromarray(crop[:, :, 0]), "rgba.png": Image.fromarray(np.dstack([crop, crop[:, :, :1]])),
             "deep.png": None}
    for name, img in cases.items():
        path = tmp_path / name
        if img is None:
            cv2.imwrite(str(path), (crop[:, :, ::-1].astype(np.uint16) * 257))  # 16-bit RGB PNG
        else:
            img.save(path)
        preview, png = client.predict(handle_file(str(path)), "student", api_name="/sharpen")
        assert Image.open(preview).size == (160, 200), name
        full = cv2.imread(png, cv2.IMREAD_UNCHANGED)
        assert full.shape[:2] == (200, 160), name
        if name == "deep.png":  # 16-bit in, 16-bit out, and still the same picture
            assert full.dtype == np.uint16 and full.shape[2] == 3
            assert np.abs(full[:, :, ::-1].astype(int) // 257 - crop).mean() < 3
        if name == "rgba.png":
            assert full.shape[2] == 4 and np.array_equal(full[:, :, 3], crop[:, :, 0])  # alpha kept


def test_large_image_is_downscaled_not_refused(client, tmp_path):
    big = cv2.resize(read_image(ROOT / "demo/clean/coffee.png"), (800, 700))
    write(tmp_path / "big.png", big)
    out = read_image(client.predict(handle_file(str(tmp_path / "big.png")), "student", api_name="/sharpen")[0])
    assert out.shape[0] * out.shape[1] <= MAX_PIXELS
    assert abs(out.shape[1] / out.shape[0] - 800 / 700) < 0.02


def test_simulate_restoration_beats_the_degraded_frame(client):
    *images, table = client.predict(handle_file(str(ROOT / "demo/clean/astronaut.png")), "medium", 2, 30,
                                    api_name="/simulate")
    rows = {r[0]: dict(zip(table["headers"], r)) for r in table["data"]}
    assert set(rows) == {"degraded input", "student (real-time)", "teacher"}
    assert rows["teacher"]["PSNR (dB)"] > rows["degraded input"]["PSNR (dB)"]
    assert rows["student (real-time)"]["PSNR (dB)"] > rows["degraded input"]["PSNR (dB)"]
    assert all(read_image(p).shape == (512, 512, 3) for p in images)


def test_huge_image_is_refused_from_its_header(client, tmp_path):
    """A 12000×12000 PNG (a few kB on disk, 144 MPix decoded) is refused before any pixel is decoded."""
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(Exception, match="too many pixels"):
        client.predict(handle_file(str(bomb)), "student", api_name="/sharpen")


def test_simulate_on_a_tiny_image_says_why(client, tmp_path):
    tiny = tmp_path / "tiny.png"
    write(tiny, np.full((1, 1, 3), 128, np.uint8))
    with pytest.raises(Exception, match="at least 32×32"):
        client.predict(handle_file(str(tiny)), "medium", 2, 30, api_name="/simulate")


def test_result_files_are_not_left_behind(tmp_path, photo):
    """Every request used to leave its own temp folder forever; now one folder, pruned, and Gradio's cache too."""
    temp, cache = tmp_path / "tmp", tmp_path / "gradio"
    temp.mkdir()
    src = tmp_path / "in.png"
    write(src, np.ascontiguousarray(photo[:64, :64]))
    with running_app("--study", "", "--keep-files", "4", env={"TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(cache)}) as url:
        c = Client(url, verbose=False)
        for _ in range(3):
            c.predict(handle_file(str(src)), "unsharp", api_name="/sharpen")
        ours = list(temp.glob("sharpkd_*"))
        assert len(ours) == 1 and len(list(ours[0].iterdir())) == 3
        time.sleep(9)
        c.predict(handle_file(str(src)), "unsharp", api_name="/sharpen")
        assert len(list(ours[0].iterdir())) == 1  # the three old results went
        copies = [f for f in cache.rglob("*") if f.name == "in.png" or f.name.startswith("sharpened-")]
        assert copies and all(time.time() - f.stat().st_mtime < 8 for f in copies)  # Gradio's copies went too


@pytest.mark.parametrize("payload", [b"definitely not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_corrupt_upload_gives_a_clear_message(client, tmp_path, payload):
    bad = tmp_path / "upload.png"
    bad.write_bytes(payload)
    with pytest.raises(Exception, match="not a readable image"):
        client.predict(handle_file(str(bad)), "student", api_name="/sharpen")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (tests/run.sh installs it on CI)")
def test_browser_upload_and_sharpen(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server)
        page.locator("#sharpen-input input[type=file]").set_input_files(str(ROOT / "demo/degraded/astronaut_medium.png"))
        page.locator("#sharpen-input img").first.wait_for(timeout=30_000)
        page.locator("#sharpen-button").click()
        out = page.locator("#sharpen-output img").first
        out.wait_for(timeout=60_000)
        size = out.evaluate("img => new Promise(r => img.complete ? r([img.naturalWidth, img.naturalHeight]) "
                            ": img.onload = () => r([img.naturalWidth, img.naturalHeight]))")
        assert size == [512, 512]
        page.get_by_text("ms", exact=False).first.wait_for(timeout=10_000)
        assert "512×512" in page.locator("#sharpen-info").inner_text()
        page.screenshot(path=str(tmp_path / "sharpen.png"))
        browser.close()


def test_the_teachers_progress_is_shown_while_it_works(server):
    """The teacher takes tens of seconds on a photo on a CPU: the page shows a labelled, moving progress."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server)
        page.locator("#sharpen-input input[type=file]").set_input_files(str(ROOT / "demo/degraded/astronaut_medium.png"))
        page.locator("#sharpen-input img").first.wait_for(timeout=30_000)
        page.get_by_label("Teacher (best quality)").check()
        page.locator("#sharpen-button").click()
        label = page.get_by_text("Teacher (best quality): restoring 512×512 px", exact=False).first
        label.wait_for(timeout=60_000)
        page.locator("#sharpen-output img").first.wait_for(timeout=120_000)
        assert "Teacher" in page.locator("#sharpen-info").inner_text()
        browser.close()
