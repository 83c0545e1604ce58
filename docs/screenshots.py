"""Take a screenshot of each app tab for the README: python docs/screenshots.py (needs Debian's chromium)."""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from app_server import running_app  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def main():
    db = Path(tempfile.mkdtemp()) / "shots.db"
    with running_app("--study-db", f"sqlite:///{db}") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.locator("#sharpen-input input[type=file]").set_input_files(str(ROOT / "demo/degraded/astronaut_medium.png"))
        page.locator("#sharpen-button").click()
        page.locator("#sharpen-output img").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ROOT / "docs/sharpen.png"))

        page.get_by_role("tab", name="Simulate bandwidth").click()
        page.locator("input[type=file]").nth(1).set_input_files(str(ROOT / "demo/clean/astronaut.png"))
        page.get_by_role("button", name="Simulate and restore").click()
        page.get_by_text("degraded input", exact=True).first.wait_for(timeout=120_000)
        page.set_viewport_size({"width": 1280, "height": 1500})
        page.wait_for_timeout(2500)
        page.screenshot(path=str(ROOT / "docs/simulate.png"))
        page.set_viewport_size({"width": 1280, "height": 1000})

        page.get_by_role("tab", name="Live", exact=True).click()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(ROOT / "docs/live.png"))

        page.goto(url)
        page.get_by_role("tab", name="Rate").click()
        page.locator("#rater-start").click()  # an open study enrols a new rater with a signed token
        page.locator("#rater-begin").click()
        page.get_by_text("Trial 1 of").wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ROOT / "docs/rate.png"))
        browser.close()
    print("wrote docs/{sharpen,simulate,live,rate}.png")


if __name__ == "__main__":
    main()
