"""Take a screenshot of each app tab for the README: python docs/screenshots.py [TAB ...] (needs Debian's chromium;
TAB: sharpen, simulate, live, rate; all by default)."""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from app_server import running_app  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from kd.browser import launch, write_y4m  # noqa: E402
from kd.clips import load_photo, pan_clip  # noqa: E402

TABS = ("sharpen", "simulate", "live", "rate")


def main(tabs=TABS):
    tmp = Path(tempfile.mkdtemp())
    camera = write_y4m(tmp / "cam.y4m", pan_clip(load_photo("astronaut"), (1280, 720), frames=60))
    with running_app("--study-db", f"sqlite:///{tmp / 'shots.db'}") as url, sync_playwright() as p:
        browser = launch(p, camera)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        if "sharpen" in tabs:
            sharpen_tab(page)
        if "simulate" in tabs:
            simulate_tab(page)
        if "live" in tabs:
            live_tab(page)
        if "rate" in tabs:
            rate_tab(page, url)
        browser.close()
    print(f"wrote docs/{{{','.join(tabs)}}}.png")


def sharpen_tab(page):
    page.locator("#sharpen-input input[type=file]").set_input_files(str(ROOT / "demo/degraded/astronaut_medium.png"))
    page.locator("#sharpen-button").click()
    page.locator("#sharpen-output img").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ROOT / "docs/sharpen.png"))


def simulate_tab(page):
    page.get_by_role("tab", name="Simulate bandwidth").click()
    page.locator("input[type=file]").nth(1).set_input_files(str(ROOT / "demo/clean/astronaut.png"))
    page.get_by_role("button", name="Simulate and restore").click()
    page.get_by_text("degraded input", exact=True).first.wait_for(timeout=120_000)
    page.set_viewport_size({"width": 1280, "height": 1500})
    page.wait_for_timeout(2500)
    page.screenshot(path=str(ROOT / "docs/simulate.png"))
    page.set_viewport_size({"width": 1280, "height": 1000})


def live_tab(page):
    """A 1280×720 camera over the in-page call capped at 150 kbit/s (it arrives as 320×180), sharpened."""
    page.get_by_role("tab", name="Live", exact=True).click()
    live = page.locator("iframe#live-frame").element_handle().content_frame()
    live.locator("#size").select_option("1280x720")
    live.locator("#codec").select_option("h264")
    live.locator("#bitrate").fill("150")
    live.locator("#start").click()
    live.wait_for_function("() => Number(document.getElementById('stats').dataset.frames || 0) >= 8",
                           timeout=180_000)
    page.screenshot(path=str(ROOT / "docs/live.png"))


def rate_tab(page, url):
    page.goto(url)
    page.get_by_role("tab", name="Rate").click()
    page.locator("#rater-start").wait_for(state="visible", timeout=600_000)  # the study's stimuli are built at start
    page.locator("#rater-start").click()  # an open study enrols a new rater with a signed token
    page.locator("#rater-begin").click()
    page.get_by_text("Trial 1 of").wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ROOT / "docs/rate.png"))


if __name__ == "__main__":
    main(tuple(sys.argv[1:]) or TABS)
